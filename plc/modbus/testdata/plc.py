#!/usr/bin/python3
"""A PLC driving segad's Modbus TCP handshake, with Debian's python3-pymodbus
(3.0) as an independent Modbus client. Started by plc/modbus's tests.

Modes (each prints one JSON summary line on stdout and exits 0; a protocol
violation is an exception, exit 1):
  cycles N        N trigger/result cycles as a PLC program runs them,
                  acknowledging every result, free-running ones included
  noack N         N triggers without ResultAck, then read the buffer
  badinput        writes to read-only registers, out-of-range addresses,
                  wrong unit, unknown function, bad values: the exceptions
  busy            triggers while busy (max_pending_triggers 1), without
                  TriggerEnable, with a bad part ID
  connect         one read; prints whether the server answered (allow-list)
  line N          N cycles against a real daemon (segad run): the verdict is
                  whatever the daemon decides, so every answer is reported
                  (InspectionID, part, code, reason, score, threshold, seq,
                  the wall time ResultValid was seen) for the caller to
                  check against MQTT; starts like a PLC after a reboot
                  (clears its bits, ResetError, drains shown results)
  linenoack N     N triggers against a real daemon, each waiting for its
                  result to enter the buffer, without ResultAck; then reads
                  the overrun state and the buffered results
Options for line/linenoack: --prefix P (part IDs P00001..; every 10th left
empty in line mode, so the server makes one), --progress (one line on
stderr per answered cycle).

The verdict rule is shared with the Go fake line: crc32(part ID) % 10:
0..6 pass, 7..8 fail, 9 error; score (crc % 1000) / 100, threshold 7.
"""
import argparse
import json
import socket
import struct
import sys
import time
import zlib

from pymodbus.client import ModbusTcpClient

# Register map (docs/plc.md, plc/modbus/regmap.go).
CONTROL, STATUS, TRIGGER_ID, ERROR_CODE, BUFFERED, PENDING = 0, 1, 2, 3, 4, 5
OVERRUN_ID = 8
RESULT_BLOCK, RESULT_LEN = 10, 10  # ResultInspectionID .. Threshold
COUNTERS = 30
PART_ID_IN, RESULT_PART_ID = 100, 200
MAP_SIZE = 264
EN, TRIG, ACK, RESET = 1, 2, 4, 8
ONLINE, READY, BUSY, TACK, VALID, ERROR, OVERRUN, REFUSED = (1 << i for i in range(8))
F_TRIGGERED, F_SCORE = 1, 2


def rule(part):
    c = zlib.crc32(part.encode())
    v = c % 10
    code = 0 if v < 7 else (1 if v < 9 else 2)
    return code, (c % 1000) / 100.0


class PLC:
    def __init__(self, host, port, unit, regs, order, source=None):
        kw = {}
        if source:
            kw["source_address"] = (source, 0)
        self.c = ModbusTcpClient(host, port=port, timeout=3, retries=0, **kw)
        self.ok = self.c.connect()
        self.unit, self.regs, self.order = unit, regs, order

    def rd(self, addr, n):
        r = self.c.read_holding_registers(addr, n, slave=self.unit)
        if r.isError():
            raise RuntimeError(f"read {addr}+{n}: {r}")
        return r.registers

    def wr(self, addr, v):
        r = self.c.write_register(addr, v, slave=self.unit)
        if r.isError():
            raise RuntimeError(f"write {addr}={v}: {r}")

    def wrs(self, addr, vs):
        r = self.c.write_registers(addr, vs, slave=self.unit)
        if r.isError():
            raise RuntimeError(f"write {addr}+{len(vs)}: {r}")

    def status(self):
        return self.rd(STATUS, 1)[0]

    def wait(self, mask, want, what, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            s = self.status()
            if (s & mask) == want:
                return s
            if time.monotonic() > end:
                raise RuntimeError(f"timeout waiting for {what}: status {s:#06x}")

    def f32(self, w):
        hi, lo = (w[0], w[1]) if self.order == "big" else (w[1], w[0])
        return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]

    def u32(self, w):
        hi, lo = (w[0], w[1]) if self.order == "big" else (w[1], w[0])
        return hi << 16 | lo

    def counters(self):
        w = self.rd(COUNTERS, 16)
        names = ["parts", "fails", "errors", "overruns", "triggers", "refused", "conn_lost", "conn_refused"]
        return {n: self.u32(w[2 * i:2 * i + 2]) for i, n in enumerate(names)}

    def encode(self, s):
        b = s.encode().ljust(2 * self.regs, b"\0")
        return [b[i] << 8 | b[i + 1] for i in range(0, 2 * self.regs, 2)]

    @staticmethod
    def decode(regs):
        b = b"".join(struct.pack(">H", r) for r in regs)
        return b.split(b"\0", 1)[0].decode()

    def trigger(self, part):
        """Raise Trigger with part in PartIDIn; wait TriggerAck; clear it."""
        self.wrs(PART_ID_IN, self.encode(part))
        self.wr(CONTROL, EN | TRIG)
        s = self.wait(TACK | REFUSED, TACK, "TriggerAck")
        tid = self.rd(TRIGGER_ID, 1)[0]
        self.wr(CONTROL, EN)
        self.wait(TACK, 0, "TriggerAck to clear")
        return tid

    def result(self, timeout=5.0):
        """Wait ResultValid, read the result, acknowledge it."""
        self.wait(VALID, VALID, "ResultValid", timeout)
        seen = time.time()
        w = self.rd(RESULT_BLOCK, RESULT_LEN)
        r = {
            "id": w[0], "code": w[1], "reason": w[2], "flags": w[3], "seq": w[4],
            "score": self.f32(w[6:8]), "threshold": self.f32(w[8:10]),
            "part": self.decode(self.rd(RESULT_PART_ID, self.regs)) if self.regs else "",
            "seen": seen,
        }
        self.wr(CONTROL, EN | ACK)
        if self.status() & VALID:
            raise RuntimeError("ResultValid still set after ResultAck")
        self.wr(CONTROL, EN)
        return r


def check(cond, msg):
    if not cond:
        raise RuntimeError(msg)


def cycles(p, n):
    p.wr(CONTROL, EN)
    free, last_seq, t0 = 0, None, time.monotonic()
    answered = []
    for i in range(1, n + 1):
        part = "" if i % 10 == 0 else f"P{i:05d}"
        tid = p.trigger(part)
        check(tid != 0, "TriggerID 0")
        while True:
            r = p.result()
            if last_seq is not None:
                check(r["seq"] == (last_seq % 65535) + 1, f"result seq {r['seq']} after {last_seq}: a result was lost")
            last_seq = r["seq"]
            if r["id"] == 0:
                check(not r["flags"] & F_TRIGGERED, f"free result with Triggered flag: {r}")
                check(not r["part"].startswith("P"), f"a PLC part came back without its InspectionID: {r}")
                free += 1
                continue
            check(r["flags"] & F_TRIGGERED, f"answer without Triggered flag: {r}")
            check(r["id"] == tid, f"InspectionID {r['id']} answered while waiting for {tid}: out of order or twice")
            if part:
                check(r["part"] == part, f"part {r['part']!r} answered for {part!r}")
            else:
                check(r["part"].startswith("plc-"), f"generated part ID expected, got {r['part']!r}")
            code, score = rule(r["part"])
            check(r["code"] == code, f"{r['part']}: result code {r['code']}, want {code}")
            check(abs(r["score"] - score) < 1e-4 and r["flags"] & F_SCORE, f"{r['part']}: score {r['score']}, want {score}")
            check(abs(r["threshold"] - 7.0) < 1e-6, f"threshold {r['threshold']}")
            answered.append(tid)
            break
    check(len(set(answered)) == n, "an InspectionID was answered twice")
    return {"cycles": n, "first_id": answered[0], "last_id": answered[-1], "free": free,
            "seconds": round(time.monotonic() - t0, 3), "counters": p.counters()}


def noack(p, n):
    p.wr(CONTROL, EN)
    ids = [p.trigger(f"N{i:04d}") for i in range(1, n + 1)]
    # The fake line answers each at once; give the last ones time to land.
    end = time.monotonic() + 5
    while p.rd(PENDING, 1)[0] and time.monotonic() < end:
        time.sleep(0.01)
    s = p.status()
    regs = p.rd(0, 9)
    before = {"status": s, "error_code": regs[ERROR_CODE], "buffered": regs[BUFFERED],
              "overrun_id": regs[OVERRUN_ID], "counters": p.counters()}
    got = []
    while p.status() & VALID:
        r = p.result()
        got.append([r["id"], r["seq"], r["part"]])
    p.wr(CONTROL, EN | RESET)
    p.wr(CONTROL, EN)
    return {"trigger_ids": ids, "before": before, "results": got, "status_after_reset": p.status()}


def startup(p):
    """A PLC after a (re)boot: clear Trigger and ResultAck, ResetError
    (abandons triggers of a previous connection), drain shown results."""
    p.wr(CONTROL, EN)
    p.wr(CONTROL, EN | RESET)
    p.wr(CONTROL, EN)
    drained = 0
    while p.status() & VALID:  # late results arrive as free ones later
        p.result()
        drained += 1
    return drained


def line(p, n, prefix, progress):
    drained = startup(p)
    answered, free, last_seq, t0 = [], [], None, time.monotonic()
    for i in range(1, n + 1):
        part = "" if i % 10 == 0 else f"{prefix}{i:05d}"
        tid = p.trigger(part)
        check(tid != 0, "TriggerID 0")
        while True:
            r = p.result(timeout=10)
            if last_seq is not None:
                check(r["seq"] == (last_seq % 65535) + 1, f"result seq {r['seq']} after {last_seq}: a result was lost")
            last_seq = r["seq"]
            if r["id"] == 0:
                check(not r["flags"] & F_TRIGGERED, f"free result with Triggered flag: {r}")
                free.append(r)
                continue
            check(r["flags"] & F_TRIGGERED, f"answer without Triggered flag: {r}")
            check(r["id"] == tid, f"InspectionID {r['id']} answered while waiting for {tid}: out of order or twice")
            if part:
                check(r["part"] == part, f"part {r['part']!r} answered for {part!r}")
            else:
                check(r["part"].startswith("plc-"), f"generated part ID expected, got {r['part']!r}")
            answered.append(r)
            if progress:
                print(f"cycle {i} {tid} {r['part']}", file=sys.stderr, flush=True)
            break
    check(len({r["id"] for r in answered}) == n, "an InspectionID was answered twice")
    return {"cycles": n, "drained": drained, "answered": answered, "free": free,
            "seconds": round(time.monotonic() - t0, 3), "counters": p.counters()}


def linenoack(p, n, prefix):
    startup(p)
    ids = []
    for i in range(1, n + 1):
        ids.append(p.trigger(f"{prefix}{i:05d}"))
        end = time.monotonic() + 10
        while p.rd(PENDING, 1)[0] and time.monotonic() < end:
            time.sleep(0.005)
        check(p.rd(PENDING, 1)[0] == 0, f"trigger {ids[-1]}: no result within 10s")
    regs = p.rd(0, 9)
    before = {"status": regs[STATUS], "error_code": regs[ERROR_CODE], "buffered": regs[BUFFERED],
              "overrun_id": regs[OVERRUN_ID], "counters": p.counters()}
    got = []
    while p.status() & VALID:
        r = p.result()
        got.append([r["id"], r["seq"], r["part"]])
    p.wr(CONTROL, EN | RESET)
    p.wr(CONTROL, EN)
    return {"trigger_ids": ids, "before": before, "results": got, "status_after_reset": p.status()}


def exc_code(r):
    return getattr(r, "exception_code", None) if r.isError() else None


def badinput(p, host, port):
    u = p.unit
    out = {}
    c = p.c
    out["write_status"] = exc_code(c.write_register(STATUS, 5, slave=u))
    out["write_result"] = exc_code(c.write_register(RESULT_BLOCK, 1, slave=u))
    out["write_counters"] = exc_code(c.write_registers(COUNTERS, [1, 2], slave=u))
    out["write_span_ro"] = exc_code(c.write_registers(0, [EN, 0], slave=u))  # 0 rw, 1 ro: all or nothing
    out["control_after_span"] = p.rd(CONTROL, 1)[0]
    out["control_reserved_bit"] = exc_code(c.write_register(CONTROL, 0x10, slave=u))
    out["read_past_end"] = exc_code(c.read_holding_registers(MAP_SIZE, 1, slave=u))
    out["read_across_end"] = exc_code(c.read_holding_registers(MAP_SIZE - 1, 2, slave=u))
    out["read_input_past_end"] = exc_code(c.read_input_registers(MAP_SIZE, 1, slave=u))
    out["read_126"] = exc_code(c.read_holding_registers(0, 126, slave=u))
    out["write_coil_reserved"] = exc_code(c.write_coil(4, True, slave=u))
    out["read_coil_past_end"] = exc_code(c.read_coils(16, 1, slave=u))
    out["read_discrete_past_end"] = exc_code(c.read_discrete_inputs(0, 17, slave=u))
    out["write_part_id_past_n"] = exc_code(c.write_register(PART_ID_IN + p.regs, 0x4141, slave=u))
    out["wrong_unit"] = exc_code(c.read_holding_registers(0, 1, slave=(u % 200) + 7))
    out["unit_255"] = exc_code(c.read_holding_registers(0, 1, slave=255))
    out["read_discrete_ok"] = exc_code(c.read_discrete_inputs(0, 8, slave=u))
    out["read_input_ok"] = exc_code(c.read_input_registers(0, 125, slave=u))
    # Raw frames pymodbus will not send: an unknown function (0x08
    # diagnostics), a short PDU, then garbage that ends the connection.
    s = socket.create_connection((host, port), timeout=3)

    def raw(pdu):
        s.sendall(struct.pack(">HHHB", 0x1234, 0, len(pdu) + 1, u) + pdu)
        h = s.recv(7)
        body = s.recv(struct.unpack(">H", h[4:6])[0] - 1)
        return body

    out["raw_function_08"] = list(raw(b"\x08\x00\x00\x12\x34"))
    out["raw_short_read"] = list(raw(b"\x03\x00"))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(3)
    try:
        out["raw_garbage_closed"] = s.recv(100) == b""
    except ConnectionResetError:
        out["raw_garbage_closed"] = True
    s.close()
    # The PLC's connection still works.
    out["still_serving"] = p.status() & ONLINE != 0
    return out


def busy(p):
    out = {}
    # No TriggerEnable: refused.
    p.wr(CONTROL, 0)
    p.wrs(PART_ID_IN, p.encode("B0001"))
    p.wr(CONTROL, TRIG)
    s = p.status()
    out["no_enable"] = {"status": s, "error_code": p.rd(ERROR_CODE, 1)[0]}
    p.wr(CONTROL, RESET)
    p.wr(CONTROL, EN)
    # The fake line holds results for a while: the first trigger is taken,
    # the second (max_pending_triggers 1) is refused with a flag.
    t1 = p.trigger("B0002")
    p.wrs(PART_ID_IN, p.encode("B0003"))
    p.wr(CONTROL, EN | TRIG)
    s = p.status()
    out["while_busy"] = {"status": s, "error_code": p.rd(ERROR_CODE, 1)[0], "trigger_id": p.rd(TRIGGER_ID, 1)[0]}
    p.wr(CONTROL, EN)
    r = p.result(timeout=10)
    out["first_answer"] = [r["id"], r["part"], t1]
    out["refused_no_result"] = p.status() & VALID == 0
    p.wr(CONTROL, EN | RESET)
    p.wr(CONTROL, EN)
    out["after_reset"] = p.status()
    # A part ID with a control character: refused, not passed to the line.
    bad = p.encode("B0004")
    bad[1] = 0x0A00
    p.wrs(PART_ID_IN, bad)
    p.wr(CONTROL, EN | TRIG)
    out["bad_part_id"] = {"status": p.status(), "error_code": p.rd(ERROR_CODE, 1)[0]}
    p.wr(CONTROL, EN | RESET)
    p.wr(CONTROL, EN)
    t3 = p.trigger("B0005")
    r = p.result(timeout=10)
    out["after"] = [r["id"], r["part"], t3]
    out["counters"] = p.counters()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("n", nargs="?", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--unit", type=int, default=1)
    ap.add_argument("--regs", type=int, default=16)
    ap.add_argument("--order", default="big")
    ap.add_argument("--source")
    ap.add_argument("--prefix", default="L")
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args()
    p = PLC(a.host, a.port, a.unit, a.regs, a.order, a.source)
    if a.mode == "connect":
        res = {"connected": bool(p.ok)}
        if p.ok:
            try:
                r = p.c.read_holding_registers(STATUS, 1, slave=a.unit)
                res["answered"] = not r.isError()
            except Exception as e:  # refused: closed without an answer
                res["answered"] = False
                res["error"] = str(e)
        print(json.dumps(res))
        return
    if not p.ok:
        raise SystemExit(f"cannot connect to {a.host}:{a.port}")
    if a.mode == "cycles":
        res = cycles(p, a.n)
    elif a.mode == "noack":
        res = noack(p, a.n)
    elif a.mode == "line":
        res = line(p, a.n, a.prefix, a.progress)
    elif a.mode == "linenoack":
        res = linenoack(p, a.n, a.prefix)
    elif a.mode == "badinput":
        res = badinput(p, a.host, a.port)
    elif a.mode == "busy":
        res = busy(p)
    else:
        raise SystemExit(f"unknown mode {a.mode}")
    p.c.close()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
