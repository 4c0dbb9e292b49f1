// Package outbox is the durable, bounded queue that sits between a decision
// and the MQTT broker. A result is appended (and fsynced) before Publish
// returns, and removed only once the broker acknowledged it, so a broker
// outage, a network cut, SIGKILL or a reboot never loses a result; on restart
// the pending entries come back in append order.
//
// Appends are group-committed: every append and acknowledgement waiting when
// the committer wakes goes into one bbolt transaction, so concurrent callers
// share one fsync instead of queueing behind each other's.
//
// The queue is bounded by entry count, bytes and age. When it is full, the
// oldest pass results go first; fail results are dropped only when no pass
// result is left, because a lost fail can mean a bad part shipped.
package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/segad-edge/segad-edge/mqtt/internal/boltcheck"
	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
)

// bucketName holds one key per pending entry: the 8-byte big-endian sequence
// number, so bbolt's key order is append order.
var bucketName = []byte("outbox")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("outbox closed")

// Entry is one pending result: the encoded result payload plus, for failed
// parts, the reject payload, stored together so both survive a crash.
type Entry struct {
	// Seq is assigned by Append; it orders entries and is the deletion key.
	Seq uint64
	// ID is the result ID (for logs and drop reports).
	ID string
	// Fail marks entries that must outlive pass entries when the outbox is full.
	Fail bool
	// Created is when the entry was appended; MaxAge counts from it.
	Created time.Time
	// Result is the payload for the result topic.
	Result []byte
	// Reject is the payload for the reject topic; empty for pass results.
	Reject []byte
}

// Limits bound the outbox. Zero means unbounded for that dimension.
type Limits struct {
	// MaxEntries caps the number of pending entries.
	MaxEntries int
	// MaxBytes caps the summed encoded size of pending entries.
	MaxBytes int64
	// MaxAge drops entries older than this, whatever their verdict: a result
	// that old is no use to a PLC and the MES gets it from the daemon's logs.
	MaxAge time.Duration
}

// Options configure Open and OpenMemory.
type Options struct {
	Limits
	// NoSync skips fsync (bbolt NoSync). Only for benchmarks: it gives up
	// durability against power loss (not against a process kill).
	NoSync bool
	// Logger receives drop and recovery logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// QuarantineCorrupt makes Open move a damaged file aside (renamed to
	// <path>.corrupt-<time>) and start a new one, re-queueing every entry
	// that is still readable. Without it Open refuses a damaged file with an
	// error that says what to do: the operator decides.
	QuarantineCorrupt bool
}

// Stats is a snapshot of the outbox.
type Stats struct {
	// Entries is the number of pending (unacknowledged) entries.
	Entries int
	// Bytes is their summed encoded size.
	Bytes int64
	// DroppedPass counts pass results dropped because the outbox was full.
	DroppedPass uint64
	// DroppedFail counts fail results dropped because the outbox was full of fails.
	DroppedFail uint64
	// Expired counts entries dropped because they were older than MaxAge.
	Expired uint64
}

// Drops is the total of all dropped entries.
func (s Stats) Drops() uint64 { return s.DroppedPass + s.DroppedFail + s.Expired }

// backend is where entries live: bbolt on disk, or a map for the
// non-durable baseline that benchmarks compare against.
type backend interface {
	commit(puts []Entry, dels []uint64) error
	next(after uint64, n int) ([]Entry, error)
	load(fn func(Entry, int64)) error
	close() error
}

type meta struct {
	fail    bool
	size    int64
	created time.Time
}

type appendOp struct {
	e    Entry
	done chan appendResult
}

type appendResult struct {
	seq uint64
	err error
}

// Outbox is a durable FIFO of results awaiting a broker acknowledgement.
// All methods are safe for concurrent use.
type Outbox struct {
	name string
	be   backend
	opt  Options
	log  *slog.Logger

	appendCh chan appendOp
	ackCh    chan uint64
	notify   chan struct{}
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	closeMu  sync.RWMutex

	lim *ratelog.Limiter // bounds drop logs when the outbox overflows

	mu      sync.Mutex // guards the index below
	live    map[uint64]meta
	passQ   []uint64 // append order, lazily purged of acked seqs
	failQ   []uint64
	bytes   int64
	nextSeq uint64
	stats   Stats
}

// Open opens (or creates) the bbolt outbox at path and recovers its pending
// entries. It fails with a clear error when another process holds the file,
// and when the file is damaged (see Options.QuarantineCorrupt).
func Open(path string, opt Options) (*Outbox, error) {
	// The state folder may not exist on a first start outside systemd
	// (whose StateDirectory= creates it).
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	// bbolt panics on a damaged page (for this file, without a synced
	// freelist, in a goroutine of its own where no recover reaches), so
	// the file is checked before bbolt sees it.
	if _, err := boltcheck.Check(path); err != nil {
		if !errors.Is(err, boltcheck.ErrCorrupt) {
			return nil, fmt.Errorf("open outbox %s: %w", path, err)
		}
		return openDamaged(path, err, opt)
	}
	db, err := openBolt(path, opt)
	if err != nil {
		return nil, err
	}
	o, err := start(path, &boltBackend{db: db, path: path}, opt)
	if errors.Is(err, errUndecodable) {
		return openDamaged(path, err, opt)
	}
	return o, err
}

func openBolt(path string, opt Options) (db *bolt.DB, err error) {
	// A last guard: a panic bbolt raises in this goroutine becomes an
	// error. (The check above is what keeps it from panicking elsewhere.)
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("open outbox %s: %w: bbolt: %v", path, boltcheck.ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second,
		NoSync:         opt.NoSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open outbox %s: file is locked by another process (is another segad running with the same mqtt.outbox.path?)", path)
		}
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open outbox %s: create bucket: %w", path, err)
	}
	return db, nil
}

// openDamaged handles a damaged outbox file: it counts what is still
// readable and either refuses with instructions, or (QuarantineCorrupt)
// moves the file aside, starts a new one and re-queues what was readable.
func openDamaged(path string, damage error, opt Options) (*Outbox, error) {
	var salvaged []Entry
	bad := 0
	_, serr := boltcheck.Salvage(path, bucketName, func(k, v []byte) {
		if len(k) != 8 {
			bad++
			return
		}
		e, err := decode(binary.BigEndian.Uint64(k), v)
		if err != nil {
			bad++
			return
		}
		salvaged = append(salvaged, e)
	})
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	lossNote := fmt.Sprintf("%d pending results can still be read from it", len(salvaged))
	if bad > 0 {
		lossNote += fmt.Sprintf(" (%d more entries are unreadable)", bad)
	}
	lossNote += fmt.Sprintf("; results on damaged pages of this %d-byte file are lost", size)
	if serr != nil {
		lossNote = fmt.Sprintf("nothing can be read from it (%v); every result still pending in this %d-byte file is lost", serr, size)
	}
	if !opt.QuarantineCorrupt {
		return nil, fmt.Errorf("open outbox %s: %w. %s. To start anyway: stop segad, move the file aside "+
			"(mv %s %s.corrupt), and start again: a new outbox is created and the results pending in the damaged file are not sent. "+
			"Or set mqtt.outbox.quarantine_corrupt: true to do this automatically and re-send the readable results",
			path, damage, lossNote, path, path)
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w; moving it aside to %s failed: %v", path, damage, aside, err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Error("outbox file was damaged: moved it aside and started a new one (mqtt.outbox.quarantine_corrupt)",
		"outbox", path, "moved_to", aside, "damage", damage.Error(), "requeued", len(salvaged), "unreadable", bad, "file_bytes", size)
	db, err := openBolt(path, opt)
	if err != nil {
		return nil, err
	}
	// Re-queue in the original order, keeping each entry's creation time
	// (MaxAge still counts from the decision), in one transaction.
	for i := range salvaged {
		salvaged[i].Seq = uint64(i + 1)
	}
	be := &boltBackend{db: db, path: path}
	if err := be.commit(salvaged, nil); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open outbox %s: re-queue %d readable results from %s: %w", path, len(salvaged), aside, err)
	}
	return start(path, be, opt)
}

// OpenMemory returns an outbox that keeps entries in RAM only. It is the
// baseline for benchmarks and for setups that explicitly accept losing
// pending results on a crash (mqtt.outbox.memory: true).
func OpenMemory(opt Options) *Outbox {
	o, _ := start("memory", &memBackend{m: map[uint64]Entry{}}, opt) // memBackend.load never fails
	return o
}

func start(name string, be backend, opt Options) (*Outbox, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	o := &Outbox{
		name:     name,
		be:       be,
		opt:      opt,
		log:      opt.Logger.With("outbox", name),
		appendCh: make(chan appendOp, 1024),
		ackCh:    make(chan uint64, 4096),
		notify:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		live:     map[uint64]meta{},
		nextSeq:  1,
	}
	o.lim = ratelog.New()
	err := be.load(func(e Entry, size int64) {
		o.index(e, size)
		if e.Seq >= o.nextSeq {
			o.nextSeq = e.Seq + 1
		}
	})
	if err != nil {
		_ = be.close()
		return nil, fmt.Errorf("open outbox %s: read pending entries: %w", name, err)
	}
	go o.lim.Run(o.done)
	if n := len(o.live); n > 0 {
		o.log.Info("outbox recovered pending results", "pending", n, "bytes", o.bytes)
	}
	go o.run()
	return o, nil
}

// Append stores e durably (fsynced unless NoSync) and returns its sequence
// number. It returns only once the entry is on disk, or with an error.
func (o *Outbox) Append(ctx context.Context, e Entry) (uint64, error) {
	o.closeMu.RLock()
	if o.closed.Load() {
		o.closeMu.RUnlock()
		return 0, ErrClosed
	}
	if e.Created.IsZero() {
		e.Created = o.opt.Now()
	}
	op := appendOp{e: e, done: make(chan appendResult, 1)}
	select {
	case o.appendCh <- op:
		o.closeMu.RUnlock()
	case <-ctx.Done():
		o.closeMu.RUnlock()
		return 0, fmt.Errorf("append to outbox %s: %w", o.name, ctx.Err())
	}
	// Once queued, the committer always answers (it drains on Close), and
	// the caller must learn whether the entry is durable, so no ctx here.
	r := <-op.done
	if r.err != nil {
		return 0, fmt.Errorf("append to outbox %s: %w", o.name, r.err)
	}
	return r.seq, nil
}

// Ack removes acknowledged entries. It does not wait for the deletion to
// reach disk: a lost deletion only causes a duplicate after a crash, which
// at-least-once delivery allows.
func (o *Outbox) Ack(seqs ...uint64) {
	for _, s := range seqs {
		select {
		case o.ackCh <- s:
		case <-o.done:
			return
		}
	}
}

// Next returns up to n pending entries with Seq > after, in append order.
func (o *Outbox) Next(after uint64, n int) ([]Entry, error) {
	if n <= 0 {
		return nil, nil
	}
	es, err := o.be.next(after, n)
	if err != nil {
		return nil, fmt.Errorf("read outbox %s: %w", o.name, err)
	}
	return es, nil
}

// Notify returns a channel that receives a value after entries were appended.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Stats returns a snapshot of counts and drops.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.stats
	s.Entries = len(o.live)
	s.Bytes = o.bytes
	return s
}

// Close commits what is queued, stops the committer and closes the file.
func (o *Outbox) Close() error {
	o.closeMu.Lock()
	if o.closed.Swap(true) {
		o.closeMu.Unlock()
		return nil
	}
	close(o.stop)
	o.closeMu.Unlock()
	<-o.done
	if err := o.be.close(); err != nil {
		return fmt.Errorf("close outbox %s: %w", o.name, err)
	}
	return nil
}

// run is the single committer: it batches appends and acks into one
// transaction (group commit) and applies the bounds in the same transaction.
func (o *Outbox) run() {
	defer close(o.done)
	var tick <-chan time.Time
	if o.opt.MaxAge > 0 {
		period := min(o.opt.MaxAge/4, time.Second)
		t := time.NewTicker(max(period, time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	var ops []appendOp
	var acks []uint64
	// Deletions wait (up to ackDelay) to ride along with the next append's
	// transaction: a deletion lost in a crash only causes a duplicate, while
	// an fsync per deletion would halve the append rate.
	var ackTimer *time.Timer
	var ackDue <-chan time.Time
	for {
		ops = ops[:0]
		flush := false
		select {
		case op := <-o.appendCh:
			ops = append(ops, op)
		case s := <-o.ackCh:
			acks = append(acks, s)
		case <-ackDue:
			flush = true
		case <-tick:
			flush = true
		case <-o.stop:
			o.gatherCommit(acks)
			return
		}
		ops, acks = o.gather(ops, acks)
		if len(ops) == 0 && !flush && len(acks) < 4096 {
			if ackDue == nil && len(acks) > 0 {
				ackTimer = time.NewTimer(ackDelay)
				ackDue = ackTimer.C
			}
			continue
		}
		if o.commit(ops, acks) {
			acks = acks[:0]
		}
		if ackTimer != nil {
			ackTimer.Stop()
			ackTimer, ackDue = nil, nil
		}
	}
}

// ackDelay bounds how long an acknowledged entry may stay on disk.
const ackDelay = 100 * time.Millisecond

// gather takes everything already waiting, up to a batch cap, so one fsync
// serves all of it.
func (o *Outbox) gather(ops []appendOp, acks []uint64) ([]appendOp, []uint64) {
	for len(ops) < 4096 && len(acks) < 16384 {
		select {
		case op := <-o.appendCh:
			ops = append(ops, op)
		case s := <-o.ackCh:
			acks = append(acks, s)
		default:
			return ops, acks
		}
	}
	return ops, acks
}

// gatherCommit commits acks and everything still queued (at Close).
func (o *Outbox) gatherCommit(acks []uint64) {
	for {
		ops, more := o.gather(nil, acks)
		if len(ops) == 0 && len(more) == 0 {
			return
		}
		o.commit(ops, more)
		acks = nil
	}
}

type victim struct {
	seq    uint64
	fail   bool
	reason string // "full" or "expired"
}

// commit writes appends and deletions in one transaction; it reports
// whether the transaction held, so acknowledgements of a failed one are
// kept and retried (else those entries would stay on disk forever).
func (o *Outbox) commit(ops []appendOp, acks []uint64) bool {
	o.mu.Lock()
	puts := make([]Entry, 0, len(ops))
	sizes := make([]int64, 0, len(ops))
	for i := range ops {
		e := ops[i].e
		e.Seq = o.nextSeq
		o.nextSeq++
		puts = append(puts, e)
		sizes = append(sizes, int64(encodedSize(e)))
	}
	dels := make([]uint64, 0, len(acks))
	for _, s := range acks {
		if _, ok := o.live[s]; ok {
			dels = append(dels, s)
		}
	}
	victims, newDropped := o.planBounds(puts, sizes, dels)
	o.mu.Unlock()

	allDels := dels
	for _, v := range victims {
		allDels = append(allDels, v.seq)
	}
	var keep []Entry
	var keepSizes []int64
	for i, e := range puts {
		if !newDropped[e.Seq] {
			keep = append(keep, e)
			keepSizes = append(keepSizes, sizes[i])
		}
	}
	err := o.be.commit(keep, allDels)

	o.mu.Lock()
	if err == nil {
		for _, s := range allDels {
			o.unindex(s)
		}
		for i, e := range keep {
			o.index(e, keepSizes[i])
		}
		for _, v := range victims {
			o.countDrop(v)
		}
		for _, e := range puts {
			if newDropped[e.Seq] {
				o.stats.DroppedPass++
			}
		}
	}
	o.mu.Unlock()

	if err == nil {
		// A full outbox drops on every append: rate-limited, with counts.
		for _, v := range victims {
			o.lim.Log(o.log, slog.LevelWarn, "outbox dropped a result", "seq", v.seq, "reason", v.reason, "fail", v.fail)
		}
		for _, e := range puts {
			if newDropped[e.Seq] {
				o.lim.Log(o.log, slog.LevelWarn, "outbox full of fail results: dropped new pass result", "result_id", e.ID)
			}
		}
	} else {
		o.lim.Log(o.log, slog.LevelError, "outbox commit failed", "err", err, "appends", len(ops), "acks", len(acks))
	}
	for i := range ops {
		r := appendResult{seq: puts[i].Seq, err: err}
		if err != nil {
			r.seq = 0
		}
		ops[i].done <- r
	}
	if err == nil && len(keep) > 0 {
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
	return err == nil
}

// planBounds chooses which existing entries (victims) and which of the new
// puts must be dropped so that, after this commit, the outbox is within its
// limits. Called with o.mu held; it does not modify the index.
func (o *Outbox) planBounds(puts []Entry, sizes []int64, dels []uint64) ([]victim, map[uint64]bool) {
	gone := make(map[uint64]bool, len(dels))
	for _, s := range dels {
		gone[s] = true
	}
	count := len(o.live) - len(dels) + len(puts)
	bytes := o.bytes
	for _, s := range dels {
		bytes -= o.live[s].size
	}
	for _, sz := range sizes {
		bytes += sz
	}
	var victims []victim
	newDropped := map[uint64]bool{}
	drop := func(seq uint64, m meta, reason string) {
		gone[seq] = true
		count--
		bytes -= m.size
		victims = append(victims, victim{seq, m.fail, reason})
	}

	// Age first: expired entries are useless whatever their verdict.
	if o.opt.MaxAge > 0 {
		cutoff := o.opt.Now().Add(-o.opt.MaxAge)
		for _, q := range [][]uint64{o.passQ, o.failQ} {
			for _, s := range q {
				m, ok := o.live[s]
				if !ok || gone[s] {
					continue
				}
				if !m.created.Before(cutoff) {
					break // queues are in append order, so the rest are newer
				}
				drop(s, m, "expired")
			}
		}
	}

	over := func() bool {
		return (o.opt.MaxEntries > 0 && count > o.opt.MaxEntries) ||
			(o.opt.MaxBytes > 0 && bytes > o.opt.MaxBytes)
	}
	if !over() {
		return victims, newDropped
	}
	// Oldest existing pass results first, then the new pass results (oldest
	// first), and fail results only when nothing else is left.
	for _, s := range o.passQ {
		if !over() {
			return victims, newDropped
		}
		if m, ok := o.live[s]; ok && !gone[s] {
			drop(s, m, "full")
		}
	}
	for i, e := range puts {
		if !over() {
			return victims, newDropped
		}
		if !e.Fail {
			newDropped[e.Seq] = true
			count--
			bytes -= sizes[i]
		}
	}
	for _, s := range o.failQ {
		if !over() {
			return victims, newDropped
		}
		if m, ok := o.live[s]; ok && !gone[s] {
			drop(s, m, "full")
		}
	}
	// A single new fail larger than MaxBytes, or MaxEntries smaller than one
	// batch of fails: keep them; losing a fail is worse than a soft overrun.
	return victims, newDropped
}

func (o *Outbox) countDrop(v victim) {
	switch {
	case v.reason == "expired":
		o.stats.Expired++
	case v.fail:
		o.stats.DroppedFail++
	default:
		o.stats.DroppedPass++
	}
}

func (o *Outbox) index(e Entry, size int64) {
	o.live[e.Seq] = meta{fail: e.Fail, size: size, created: e.Created}
	o.bytes += size
	if e.Fail {
		o.failQ = append(o.failQ, e.Seq)
	} else {
		o.passQ = append(o.passQ, e.Seq)
	}
}

func (o *Outbox) unindex(seq uint64) {
	m, ok := o.live[seq]
	if !ok {
		return
	}
	delete(o.live, seq)
	o.bytes -= m.size
	// Queues keep dead seqs until they reach the front, so removal is
	// amortised O(1) instead of a search per acknowledgement.
	o.passQ = o.trim(o.passQ)
	o.failQ = o.trim(o.failQ)
}

// trim pops dead seqs from the front of q, copying once most of the backing
// array is dead so memory does not grow with the total ever appended.
func (o *Outbox) trim(q []uint64) []uint64 {
	i := 0
	for i < len(q) {
		if _, ok := o.live[q[i]]; ok {
			break
		}
		i++
	}
	if i > 0 && i > len(q)/2 {
		return append([]uint64(nil), q[i:]...)
	}
	return q[i:]
}

// Encoding: version byte, flags, created (unix ns), then id, result and
// reject as uvarint-length-prefixed byte strings.
const encVersion = 1

func encodedSize(e Entry) int {
	return 2 + 8 + 3*binary.MaxVarintLen32 + len(e.ID) + len(e.Result) + len(e.Reject)
}

func encode(e Entry) []byte {
	b := make([]byte, 0, encodedSize(e))
	var flags byte
	if e.Fail {
		flags |= 1
	}
	b = append(b, encVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Created.UnixNano()))
	for _, f := range [][]byte{[]byte(e.ID), e.Result, e.Reject} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// errUndecodable marks an entry whose bytes are damaged.
var errUndecodable = errors.New("damaged entry")

func decode(seq uint64, b []byte) (Entry, error) {
	e := Entry{Seq: seq}
	if len(b) < 10 || b[0] != encVersion {
		return e, fmt.Errorf("%w %d: unknown encoding (version byte %v)", errUndecodable, seq, b[:min(len(b), 1)])
	}
	e.Fail = b[1]&1 != 0
	e.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10])))
	r := bytes.NewReader(b[10:])
	var fields [3][]byte
	for i := range fields {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return e, fmt.Errorf("%w %d: truncated", errUndecodable, seq)
		}
		fields[i] = make([]byte, n)
		_, _ = r.Read(fields[i])
	}
	e.ID, e.Result, e.Reject = string(fields[0]), fields[1], fields[2]
	if len(e.Reject) == 0 {
		e.Reject = nil
	}
	return e, nil
}

func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

type boltBackend struct {
	db   *bolt.DB
	path string
}

func (b *boltBackend) commit(puts []Entry, dels []uint64) error {
	if len(puts) == 0 && len(dels) == 0 {
		return nil
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketName)
		for _, s := range dels {
			if err := bk.Delete(key(s)); err != nil {
				return err
			}
		}
		for _, e := range puts {
			if err := bk.Put(key(e.Seq), encode(e)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltBackend) next(after uint64, n int) ([]Entry, error) {
	var out []Entry
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketName).Cursor()
		for k, v := c.Seek(key(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
			e, err := decode(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func (b *boltBackend) load(fn func(Entry, int64)) error {
	return b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: key of %d bytes", errUndecodable, len(k))
			}
			e, err := decode(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			fn(e, int64(encodedSize(e)))
			return nil
		})
	})
}

func (b *boltBackend) close() error { return b.db.Close() }

type memBackend struct {
	mu    sync.Mutex
	m     map[uint64]Entry
	order []uint64
}

func (b *memBackend) commit(puts []Entry, dels []uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range dels {
		delete(b.m, s)
	}
	for _, e := range puts {
		b.m[e.Seq] = e
		b.order = append(b.order, e.Seq)
	}
	// Drop dead seqs from the front so order does not grow without bound.
	i := 0
	for i < len(b.order) {
		if _, ok := b.m[b.order[i]]; ok {
			break
		}
		i++
	}
	b.order = b.order[i:]
	return nil
}

func (b *memBackend) next(after uint64, n int) ([]Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.order), func(i int) bool { return b.order[i] > after })
	var out []Entry
	for ; i < len(b.order) && len(out) < n; i++ {
		if e, ok := b.m[b.order[i]]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}

func (b *memBackend) load(func(Entry, int64)) error { return nil }
func (b *memBackend) close() error                  { return nil }
