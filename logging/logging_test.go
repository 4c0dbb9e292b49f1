package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRateLimitHandler: warnings pass LogBurst times per message and window,
// the rest become one summary with the count when the window ends (even if
// the flood stopped); other messages, lower levels and derived loggers are
// counted as documented.
func TestRateLimitHandler(t *testing.T) {
	var buf syncBuf
	log := slog.New(NewRateLimitHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), 3, 200*time.Millisecond))
	derived := log.With("stage", "mqtt")
	for i := 0; i < 50; i++ {
		log.Warn("frame unreadable", "i", i)
		derived.Warn("frame unreadable", "i", 100+i) // same message: same budget
		log.Info("part", "i", i)                     // info is never limited
	}
	log.Error("other message")
	lines := func(substr string) int { return strings.Count(buf.String(), substr) }
	if n := lines("msg=\"frame unreadable\""); n != 3 {
		t.Errorf("%d warnings passed, want the burst of 3", n)
	}
	if n := lines("msg=part"); n != 50 {
		t.Errorf("%d info lines passed, want all 50", n)
	}
	if n := lines("other message"); n != 1 {
		t.Errorf("another message was suppressed (%d lines)", n)
	}
	if strings.Contains(buf.String(), "suppressed") {
		t.Error("summary written before the window ended")
	}
	time.Sleep(400 * time.Millisecond)
	if !strings.Contains(buf.String(), `msg="log lines suppressed" message="frame unreadable" level=WARN suppressed=97`) {
		t.Errorf("no summary with the suppressed count after the window:\n%s", buf.String())
	}
	// A new window passes a new burst.
	log.Warn("frame unreadable")
	if n := lines("msg=\"frame unreadable\""); n != 4 {
		t.Errorf("new window: %d warnings in total, want 4", n)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
