package capture

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procThreads and procFDs count this process's OS threads and open file
// descriptors (Linux /proc).
func procThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

func procFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	return len(es)
}

// TestHungOpenDoesNotStack: a GStreamer pipeline whose open never returns
// (filesrc on a FIFO nobody writes: open(2) blocks inside OpenCV's
// set_state). The finding: every open_timeout a new open was stacked on the
// hung one, leaking 2 threads and 4 descriptors per reopen. Now at most one
// open per source is ever in flight; the state says why the source waits,
// Close stays prompt, and when the hung call returns the source recovers.
func TestHungOpenDoesNotStack(t *testing.T) {
	if testing.Short() {
		t.Skip("hung-open test takes seconds")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "cam.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	threads0, fds0 := procThreads(t), procFDs(t)
	s := openT(t, Config{Kind: KindGStreamer, OpenTimeout: 150 * time.Millisecond, Reconnect: fastReconnect,
		Pipeline: "filesrc location=" + fifo + " ! videoparse width=8 height=8 format=gray8 ! videoconvert ! appsink"})
	waitFor(t, 5*time.Second, "the open timeout to be reported", func() bool {
		return strings.Contains(s.State().LastError, "open_timeout")
	})
	// About 20 open timeouts' worth of time: the old code stacked ~15 opens.
	time.Sleep(3 * time.Second)
	st := s.State()
	if !strings.Contains(st.LastError, "still blocked in OpenCV") || st.Connected || !st.Reconnecting {
		t.Fatalf("state while the open hangs: %+v", st)
	}
	if st.Reconnects > 1 {
		t.Fatalf("%d reopens stacked on a hung open", st.Reconnects)
	}
	threads, fds := procThreads(t), procFDs(t)
	t.Logf("threads %d -> %d, fds %d -> %d", threads0, threads, fds0, fds)
	if threads-threads0 > 8 || fds-fds0 > 8 {
		t.Fatalf("threads %d -> %d, fds %d -> %d: opens are stacking", threads0, threads, fds0, fds)
	}
	// Unblock the hung open (a writer with a few bytes, then EOF). The call
	// returns, the source reopens (once), and that open hangs again on the
	// writer-less FIFO: still one at a time.
	unblock(t, fifo)
	waitFor(t, 10*time.Second, "the source to reopen after the hung call returned", func() bool {
		return s.State().Reconnects == 1
	})
	time.Sleep(time.Second)
	if st := s.State(); st.Reconnects != 1 || !strings.Contains(st.LastError, "still blocked in OpenCV") {
		t.Fatalf("after the second hang: %+v", st)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > closeWait+time.Second {
		t.Fatalf("Close took %s", d)
	}
	unblock(t, fifo) // let the last hung open return before the FIFO goes
}

// unblock opens the FIFO for writing (waking a reader blocked in open),
// writes a few bytes and closes it, which ends that pipeline.
func unblock(t *testing.T, fifo string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		// Non-blocking: fails with ENXIO until a reader is waiting.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Write(make([]byte, 256)) // with no data at all the pipeline keeps waiting
			w.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
