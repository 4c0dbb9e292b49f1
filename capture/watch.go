package capture

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// pendingFile is a file seen in the watch folder but not yet handed out.
type pendingFile struct {
	size    int64
	mtime   time.Time
	stable  int       // consecutive scans (Poll apart) with the same size and mtime
	counted time.Time // when stable was last increased
}

// watchSource inspects files dropped into a folder (by a camera's FTP/SMB
// upload) once they are complete, and moves each to done/ or failed/ when
// the daemon acknowledges its result. Files stay in place until then, so a
// restart re-inspects what was not acknowledged (at-least-once) and nothing
// acknowledged is ever inspected again.
type watchSource struct {
	base
	dir, doneDir, failedDir string
	watcher                 *fsnotify.Watcher
	wake                    chan struct{}
	stop                    chan struct{}

	mu       sync.Mutex
	pending  map[string]*pendingFile
	order    []string        // pending paths in first-seen order
	inflight map[string]bool // handed out, waiting for Ack
	// moving: Ack is moving the file (outside mu). stuck: the move failed;
	// the file stays where it is and is not handed out again in this run
	// (a restart inspects it again: at-least-once, never lost).
	moving      map[string]bool
	stuck       map[string]bool
	ackFailures int
	lastAckErr  string
	// firstBad is when a file first failed to decode: the grace period runs
	// from there, not from its mtime, which a camera with a clock running
	// ahead would set in the future (the file would then wait forever).
	firstBad  map[string]time.Time
	lastErr   string
	lastFrame time.Time
	closed    bool
	nextMu    sync.Mutex
}

func openWatch(cfg Config, pre *preprocessor) (Source, error) {
	st, err := os.Stat(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("capture source %q: watch folder %s: %w", cfg.Name, cfg.Path, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("capture source %q: watch folder %s is not a directory", cfg.Name, cfg.Path)
	}
	sub := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cfg.Path, p)
	}
	s := &watchSource{
		base: newBase(cfg, pre), dir: cfg.Path,
		doneDir: sub(cfg.Watch.DoneDir), failedDir: sub(cfg.Watch.FailedDir),
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
		pending: map[string]*pendingFile{}, inflight: map[string]bool{}, firstBad: map[string]time.Time{},
		moving: map[string]bool{}, stuck: map[string]bool{},
	}
	for _, d := range []string{s.doneDir, s.failedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("capture source %q: create %s for acknowledged files: %w", cfg.Name, d, err)
		}
	}
	// fsnotify only shortens the wait; polling decides completeness, because
	// the close-after-write event is not portable (and SMB/NFS drops may not
	// deliver events at all).
	if w, err := fsnotify.NewWatcher(); err != nil {
		s.log.Warn("fsnotify unavailable; polling only", "err", err)
	} else if err := w.Add(cfg.Path); err != nil {
		w.Close()
		s.log.Warn("fsnotify cannot watch folder; polling only", "path", cfg.Path, "err", err)
	} else {
		s.watcher = w
		go s.events()
	}
	s.log.Info("watch folder opened", "path", cfg.Path, "done", s.doneDir, "failed", s.failedDir)
	return s, nil
}

// events turns fsnotify events into wake-ups of a waiting Next.
func (s *watchSource) events() {
	for {
		select {
		case _, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			select {
			case s.wake <- struct{}{}:
			default:
			}
		case err, ok := <-s.watcher.Errors:
			if !ok {
				return
			}
			s.log.Warn("fsnotify error; polling continues", "err", err)
		}
	}
}

// scan updates the pending set from the folder and returns the first file
// that has been stable for StablePolls scans.
func (s *watchSource) scan(now time.Time) (string, bool) {
	files, err := listImages(s.dir, s.cfg.Pattern)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = fmt.Sprintf("scan watch folder %s: %v", s.dir, err)
		return "", false
	}
	s.lastErr = ""
	present := make(map[string]bool, len(files))
	for _, p := range files {
		present[p] = true
		if s.busy(p) {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue // renamed or removed between list and stat
		}
		pf := s.pending[p]
		switch {
		case pf == nil:
			s.pending[p] = &pendingFile{size: st.Size(), mtime: st.ModTime(), stable: 1, counted: now}
			s.order = append(s.order, p)
		case pf.size != st.Size() || !pf.mtime.Equal(st.ModTime()):
			pf.size, pf.mtime, pf.stable, pf.counted = st.Size(), st.ModTime(), 1, now
		case now.Sub(pf.counted) >= s.cfg.Watch.Poll:
			pf.stable++
			pf.counted = now
		}
	}
	keep := s.order[:0]
	for p := range s.stuck {
		if !present[p] {
			delete(s.stuck, p) // an operator moved it: forget it
		}
	}
	for _, p := range s.order {
		if present[p] && !s.busy(p) {
			keep = append(keep, p)
		} else {
			delete(s.pending, p)
		}
	}
	s.order = keep
	for i, p := range s.order {
		if s.pending[p].stable >= s.cfg.Watch.StablePolls {
			s.order = append(s.order[:i], s.order[i+1:]...)
			delete(s.pending, p)
			s.inflight[p] = true
			return p, true
		}
	}
	return "", false
}

// busy: p is handed out, being moved, or could not be moved. Needs mu.
func (s *watchSource) busy(p string) bool {
	return s.inflight[p] || s.moving[p] || s.stuck[p]
}

// Next implements Source: it blocks until a complete file is there.
func (s *watchSource) Next(ctx context.Context) (*Frame, error) {
	s.nextMu.Lock()
	defer s.nextMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		now := time.Now()
		if p, ok := s.scan(now); ok {
			f := s.readFile(p)
			s.mu.Lock()
			if f.Err == nil {
				delete(s.firstBad, p)
			} else if _, seen := s.firstBad[p]; !seen {
				s.firstBad[p] = now
			}
			badSince := s.firstBad[p]
			s.mu.Unlock()
			// Over the limits is final (a header does not shrink, a file
			// being written only grows): no grace for it.
			if f.Err != nil && now.Sub(badSince) < s.cfg.Watch.Grace && !errors.Is(f.Err, os.ErrNotExist) && !errors.Is(f.Err, ErrTooLarge) {
				// Probably still being written by a writer that paused
				// longer than the stability window: look again later.
				s.log.Debug("file not decodable yet; waiting for the writer", "path", p, "err", f.Err)
				f.Close()
				s.seq.Add(^uint64(0)) // this attempt is not a part: take its number back
				s.mu.Lock()
				delete(s.inflight, p)
				s.mu.Unlock()
			} else if f.Err != nil && errors.Is(f.Err, os.ErrNotExist) {
				f.Close()
				s.seq.Add(^uint64(0))
				s.mu.Lock()
				delete(s.inflight, p) // moved away by someone else: not a part
				delete(s.firstBad, p)
				s.mu.Unlock()
			} else {
				if f.Err != nil {
					s.log.Warn("bad image file: error frame", "path", p, "err", f.Err)
				}
				s.mu.Lock()
				s.lastFrame = now
				delete(s.firstBad, p)
				s.mu.Unlock()
				f.Ack = func(ok bool) error { return s.Ack(f, ok) }
				return f, nil
			}
		}
		t := time.NewTimer(s.cfg.Watch.Poll)
		select {
		case <-t.C:
		case <-s.wake:
			t.Stop()
		case <-s.stop:
			t.Stop()
			return nil, ErrClosed
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// Ack (Frame.Ack of the frames it hands out) moves the frame's file to done/ (ok) or failed/.
// A name already taken there gets a numeric suffix, so an operator's
// re-drop of a part is kept rather than overwritten. The move runs without
// the source lock, so a slow or failing file system cannot stop scans,
// Next, State or Close. A failed move is logged, counted (State's
// AckFailures) and returned; the file then stays in the watch folder, is
// not handed out again in this run, and is inspected again after a
// restart.
func (s *watchSource) Ack(f *Frame, ok bool) error {
	if f == nil || f.Path == "" {
		return fmt.Errorf("ack on %s: frame has no file path", s.name)
	}
	p := f.Path
	s.mu.Lock()
	if !s.inflight[p] {
		s.mu.Unlock()
		return fmt.Errorf("ack %s on %s: not handed out by this source, or already acknowledged", safePath(p), s.name)
	}
	delete(s.inflight, p)
	s.moving[p] = true
	s.mu.Unlock()

	dir := s.doneDir
	if !ok {
		dir = s.failedDir
	}
	err := moveInto(p, dir)

	s.mu.Lock()
	delete(s.moving, p)
	if err == nil {
		s.mu.Unlock()
		return nil
	}
	err = fmt.Errorf("ack %s on %s: %w", safePath(p), s.name, err)
	s.stuck[p] = true
	s.ackFailures++
	s.lastAckErr = err.Error()
	n := s.ackFailures
	s.mu.Unlock()
	s.log.Error("cannot move an inspected file out of the watch folder; it stays there and is inspected again after a restart (check the done/failed folders)",
		"file", p, "to", dir, "ack_failures", n, "err", err)
	return err
}

// maxNameTries bounds the search for a free name in done/ or failed/.
const maxNameTries = 1000

// moveInto renames path into dir under a free name. A dir that has been
// removed is created again (an operator's clean-up); any other failure is
// returned, never retried in a loop.
func moveInto(path, dir string) error {
	name := filepath.Base(path)
	dst, err := freeName(dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(dir, 0o755); mkErr != nil {
			return fmt.Errorf("recreate %s: %w", dir, bareErr(mkErr))
		}
		dst, err = freeName(dir, name)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("move to %s: %w", dir, bareErr(err))
	}
	return nil
}

// freeName returns dir/name, or dir/name-N.ext when that is taken, trying
// at most maxNameTries names. Any answer from the file system other than
// "taken" or "free" (dir is a file, gone, unreadable) is an error: looping
// on it would spin a core forever. A missing dir gives an error wrapping
// fs.ErrNotExist.
func freeName(dir, name string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("folder %s: %w", dir, bareErr(err))
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a folder (%s); move it aside so acknowledged files can go there", dir, st.Mode().Type())
	}
	dst := filepath.Join(dir, name)
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 1; i <= maxNameTries; i++ {
		_, err := os.Lstat(dst)
		if errors.Is(err, fs.ErrNotExist) {
			return dst, nil
		}
		if err != nil {
			return "", fmt.Errorf("check %s: %w", safePath(dst), bareErr(err))
		}
		dst = filepath.Join(dir, stem+"-"+strconv.Itoa(i)+ext)
	}
	return "", fmt.Errorf("%s: %s and %d numbered variants are all taken; empty the folder", dir, safePath(name), maxNameTries)
}

// Pending lists files handed out and not yet acknowledged (sorted), for
// shutdown logs and tests.
func (s *watchSource) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.inflight))
	for p := range s.inflight {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// State implements Source.
func (s *watchSource) State() SourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SourceState{Connected: !s.closed && s.lastErr == "", LastError: s.lastErr, AckFailures: s.ackFailures}
	if st.LastError == "" {
		st.LastError = s.lastAckErr
	}
	if !s.lastFrame.IsZero() {
		st.LastFrameAge = time.Since(s.lastFrame)
	}
	return st
}

// Close implements Source. Unacknowledged files stay in the folder.
func (s *watchSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	if s.watcher != nil {
		return s.watcher.Close()
	}
	return nil
}
