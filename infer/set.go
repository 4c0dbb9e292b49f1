package infer

import (
	"errors"
	"fmt"
	"sync"
)

// SetOutput is one frame's results from a Set. Its slices are owned by the
// Set and valid until the next Run.
type SetOutput struct {
	// Detectors holds one Output per detector, in config order.
	Detectors []Output
	// Class is the classifier's score when HasClass.
	Class float32
	// HasClass tells whether the set has a classifier.
	HasClass bool
}

// Set runs K detectors and the optional classifier concurrently on one
// frame. Each member has a worker goroutine started once by NewSet and
// parked on a channel between frames, so a frame costs channel hand-offs and
// no allocation (go statements and WaitGroups per frame would allocate).
type Set struct {
	mu     sync.Mutex
	dets   []*Detector
	cls    *Classifier
	start  []chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	imgs   []Image
	errs   []error
	out    SetOutput
	closed bool
}

// NewSet takes ownership of the detectors and the classifier (nil for none)
// and starts their workers. Close closes them all.
func NewSet(dets []*Detector, cls *Classifier) *Set {
	n := len(dets)
	if cls != nil {
		n++
	}
	s := &Set{
		dets:  dets,
		cls:   cls,
		start: make([]chan struct{}, n),
		done:  make(chan struct{}, n),
		imgs:  make([]Image, n),
		errs:  make([]error, n),
		out:   SetOutput{Detectors: make([]Output, len(dets)), HasClass: cls != nil},
	}
	for i := range s.start {
		s.start[i] = make(chan struct{})
		s.wg.Add(1)
		go s.worker(i)
	}
	return s
}

// OpenSet opens every detector and the classifier (ccfg nil for none),
// closing what was opened when one fails.
func OpenSet(dcfgs []DetectorConfig, ccfg *ClassifierConfig) (*Set, error) {
	var dets []*Detector
	fail := func(err error) (*Set, error) {
		for _, d := range dets {
			d.Close()
		}
		return nil, err
	}
	names := map[string]bool{}
	for _, c := range dcfgs {
		if names[c.Name] {
			return fail(fmt.Errorf("detector name %q is used twice: names must be unique (they name features)", c.Name))
		}
		names[c.Name] = true
		d, err := Open(c)
		if err != nil {
			return fail(err)
		}
		dets = append(dets, d)
	}
	var cls *Classifier
	if ccfg != nil {
		var err error
		if cls, err = OpenClassifier(*ccfg); err != nil {
			return fail(err)
		}
	}
	return NewSet(dets, cls), nil
}

func (s *Set) worker(i int) {
	defer s.wg.Done()
	for range s.start[i] {
		if i < len(s.dets) {
			s.out.Detectors[i], s.errs[i] = s.dets[i].Run(s.imgs[i])
		} else {
			s.out.Class, s.errs[i] = s.cls.Run(s.imgs[i])
		}
		s.done <- struct{}{}
	}
}

// Detectors returns the set's detectors in config order.
func (s *Set) Detectors() []*Detector { return s.dets }

// Classifier returns the classifier, or nil.
func (s *Set) Classifier() *Classifier { return s.cls }

// InputSizes lists the image size each member expects, detectors first then
// the classifier: capture resizes the frame once per distinct size.
func (s *Set) InputSizes() []Size {
	out := make([]Size, 0, len(s.start))
	for _, d := range s.dets {
		out = append(out, d.InputSize())
	}
	if s.cls != nil {
		out = append(out, s.cls.InputSize())
	}
	return out
}

// Run runs every member on its image concurrently: imgs[i] for detector i,
// and imgs[K] for the classifier. The result is valid until the next Run.
// Errors of all members are joined.
func (s *Set) Run(imgs []Image) (*SetOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("infer: set is closed")
	}
	if len(imgs) != len(s.start) {
		return nil, fmt.Errorf("infer: set has %d members (%d detectors, classifier %v), got %d images", len(s.start), len(s.dets), s.cls != nil, len(imgs))
	}
	copy(s.imgs, imgs)
	for _, c := range s.start {
		c <- struct{}{}
	}
	for range s.start {
		<-s.done
	}
	for _, e := range s.errs {
		if e != nil {
			return &s.out, errors.Join(s.errs...)
		}
	}
	return &s.out, nil
}

// RunEach runs every member on its image one after another, each on its
// own (no concurrency): the baseline `segad bench` measures the pipeline
// against (the sum of the sessions' run times). imgs are as for Run.
func (s *Set) RunEach(imgs []Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("infer: set is closed")
	}
	if len(imgs) != len(s.start) {
		return fmt.Errorf("infer: set has %d members, got %d images", len(s.start), len(imgs))
	}
	for i, d := range s.dets {
		if _, err := d.Run(imgs[i]); err != nil {
			return fmt.Errorf("detector %s alone: %w", d.Name(), err)
		}
	}
	if s.cls != nil {
		if _, err := s.cls.Run(imgs[len(s.dets)]); err != nil {
			return fmt.Errorf("classifier alone: %w", err)
		}
	}
	return nil
}

// Warmup runs n gray frames through every member (see Detector.Warmup).
func (s *Set) Warmup(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.dets {
		if err := d.Warmup(n); err != nil {
			return err
		}
	}
	if s.cls != nil {
		if err := s.cls.Warmup(n); err != nil {
			return fmt.Errorf("classifier: %w", err)
		}
	}
	return nil
}

// Close stops the workers and releases every session. Safe to call twice.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, c := range s.start {
		close(c)
	}
	s.wg.Wait()
	var errs []error
	for _, d := range s.dets {
		errs = append(errs, d.Close())
	}
	errs = append(errs, s.cls.Close())
	return errors.Join(errs...)
}
