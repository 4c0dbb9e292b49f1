package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
)

// brokerLogHandler is the slog handler mochi logs through. mochi logs whole
// packets ("pk") and peer-controlled strings in its warnings; a denied 1 MB
// publish became a 3.6 MB log line. Here every value is cut to an excerpt,
// packets are summarised, each message is rate-limited, and reads on
// connections that were closed (logged for every client at shutdown) are
// dropped as noise.
type brokerLogHandler struct {
	inner slog.Handler
	lim   *ratelog.Limiter
	// attrs were added with WithAttrs; kept here so Handle can rebuild the
	// record through a plain logger (the limiter's interface).
	attrs []slog.Attr
	group string
}

func (h *brokerLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *brokerLogHandler) Handle(_ context.Context, r slog.Record) error {
	var args []any
	closed := false
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), "use of closed network connection") {
			closed = true
			return false
		}
		args = append(args, boundAttr(a))
		return true
	})
	if closed {
		return nil
	}
	inner := h.inner
	if len(h.attrs) > 0 {
		inner = inner.WithAttrs(h.attrs)
	}
	if h.group != "" {
		inner = inner.WithGroup(h.group)
	}
	h.lim.Log(slog.New(inner), r.Level, r.Message, args...)
	return nil
}

func (h *brokerLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), boundAttrs(as)...)
	return &c
}

func (h *brokerLogHandler) WithGroup(g string) slog.Handler {
	c := *h
	c.group = g
	return &c
}

func boundAttrs(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = boundAttr(a)
	}
	return out
}

// boundAttr turns a value into a bounded string: packets become a summary
// (type, topic excerpt, payload size), anything else an excerpt.
func boundAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, ratelog.Excerpt(v.String()))
	case slog.KindAny:
		switch pk := v.Any().(type) {
		case packets.Packet:
			return slog.String(a.Key, packetSummary(&pk))
		case *packets.Packet:
			return slog.String(a.Key, packetSummary(pk))
		case error:
			return slog.String(a.Key, ratelog.Excerpt(pk.Error()))
		}
		return slog.String(a.Key, ratelog.Excerpt(fmt.Sprint(v.Any())))
	case slog.KindGroup:
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(boundAttrs(v.Group())...)}
	}
	return a
}

func packetSummary(pk *packets.Packet) string {
	if pk == nil {
		return "<nil>"
	}
	return fmt.Sprintf("type=%s topic=%q payload_bytes=%d qos=%d id=%d",
		packets.PacketNames[pk.FixedHeader.Type], ratelog.Excerpt(pk.TopicName), len(pk.Payload), pk.FixedHeader.Qos, pk.PacketID)
}
