package config

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Ranges of config's own keys. Every number a technician can type has one:
// a typo (warmup: 1000000000, an extra zero on a size) must stop the daemon
// with the key and the range, not make it hang, spin or fill a disk.
const (
	// MaxStationLen bounds the station name, which is an MQTT topic level,
	// a metric label, a client ID part and a file name part.
	MaxStationLen = 64
	// MinTokenLen is the shortest http.token accepted: 16 random characters
	// are beyond guessing over the network, a word is not.
	MinTokenLen = 16
	// MaxTokenLen bounds http.token (it is compared on every request).
	MaxTokenLen = 4096
	// MaxDetectors bounds K.
	MaxDetectors = 16
	// MaxThreshold bounds |segad.threshold| and |segad.warn_threshold|.
	// The score is the forest's raw margin, a sum of leaf values (a logit,
	// typically within ±20); beyond ±1e6 every part passes or every part
	// fails, which is a typo rather than a setting.
	MaxThreshold = 1e6
	// MaxForestTrees bounds fit.trees x fit.rounds.
	MaxForestTrees = 100000
	// MaxRecalls bounds the number of fit.recalls operating points.
	MaxRecalls = 16
)

// tokenAdvice says how to make a good token.
const tokenAdvice = "openssl rand -hex 32, or: head -c 32 /dev/urandom | base64"

// Ranges of the pipeline and audit keys.
var (
	queueRange     = [2]int64{1, 1024}
	warmupRange    = [2]int64{1, 100}
	shutdownRange  = [2]time.Duration{100 * time.Millisecond, 10 * time.Minute}
	auditBytes     = [2]int64{1 << 20, 1 << 44} // 1 MiB .. 16 TiB
	auditAgeRange  = [2]time.Duration{time.Minute, 10 * 365 * 24 * time.Hour}
	sampleRangeMsg = "a share between 0 and 1 of passed parts to keep"
)

// intRange reports v outside [lo, hi] as "KEY: V out of range [LO, HI]: WHY".
func (c *Config) intRange(key string, v, lo, hi int64, why string) error {
	if v >= lo && v <= hi {
		return nil
	}
	return c.errorAt(key, "%d out of range [%d, %d]: %s", v, lo, hi, why)
}

// floatRange is intRange for floats; NaN and ±Inf are always out of range.
func (c *Config) floatRange(key string, v, lo, hi float64, why string) error {
	if v >= lo && v <= hi { // false for NaN
		return nil
	}
	return c.errorAt(key, "%v out of range [%v, %v]: %s", v, lo, hi, why)
}

// durationRange is intRange for durations, printed as durations.
func (c *Config) durationRange(key string, v time.Duration, r [2]time.Duration, why string) error {
	if v >= r[0] && v <= r[1] {
		return nil
	}
	return c.errorAt(key, "%v out of range [%v, %v]: %s", v, r[0], r[1], why)
}

// validateRanges checks the pipeline and audit keys (after Defaults, so 0
// means the default has been filled in and a value still out of range was
// typed).
func (c *Config) validateRanges() error {
	p, a := c.Pipeline, c.Audit
	return errors.Join(
		c.intRange("pipeline.queue", int64(p.Queue), queueRange[0], queueRange[1],
			"frames waiting for inference; each holds a frame in memory and a longer queue only adds latency"),
		c.durationRange("pipeline.shutdown_timeout", p.ShutdownTimeout, shutdownRange,
			"how long a graceful stop may take to finish the frames in flight (systemd's stop timeout must be longer)"),
		c.intRange("pipeline.warmup", int64(p.Warmup), warmupRange[0], warmupRange[1],
			"warm-up runs per detector before the line reports ready; the first run does the lazy initialisation, more only delay readiness"),
		c.floatRange("audit.sample_pass", a.SamplePass, 0, 1, sampleRangeMsg),
		c.intRange("audit.max_bytes", a.MaxBytes, auditBytes[0], auditBytes[1],
			"the audit folder's size bound in bytes (1073741824 = 1 GiB); an entry is an image of up to a few MB"),
		c.durationRange("audit.max_age", a.MaxAge, auditAgeRange,
			"how long audit entries are kept (720h = 30 days)"),
	)
}

// validateStation checks the station name: it is one MQTT topic level
// (segad/<station>/result), so '/', '+', '#' and NUL would change which
// topics the daemon publishes to and subscribes from; it is also a metric
// label, part of the MQTT client ID and of file names, where whitespace and
// control characters break tools. Letters, digits, '.', '_' and '-' are
// safe everywhere.
func (c *Config) validateStation() error {
	s := c.Station
	if len(s) > MaxStationLen {
		return c.errorAt("station", "%d bytes long: at most %d (it names MQTT topics, metrics and files)", len(s), MaxStationLen)
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		ok := ch == '_' || ch == '-' || ch == '.' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
		if !ok {
			return c.errorAt("station", "%q has %s at byte %d: use letters, digits, '.', '_' and '-' only (it is an MQTT topic level, where '/', '+' and '#' have meanings, and a metric label and file name)", clip(s, 80), describeByte(ch), i)
		}
	}
	if s == "" || s[0] == '.' || s[0] == '-' {
		return c.errorAt("station", "%q must start with a letter, digit or '_'", s)
	}
	return nil
}

// describeByte names a byte for an error message.
func describeByte(b byte) string {
	switch {
	case b == 0:
		return "a NUL byte"
	case b == ' ' || b == '\t' || b == '\n' || b == '\r':
		return "whitespace"
	case b < 0x20 || b == 0x7f:
		return fmt.Sprintf("control character 0x%02x", b)
	case b >= 0x80:
		return "a non-ASCII character"
	default:
		return fmt.Sprintf("%q", rune(b))
	}
}

// checkToken checks an HTTP bearer token: long enough not to be guessed,
// and only characters that survive an HTTP header unchanged.
func checkToken(t string) error {
	if len(t) < MinTokenLen {
		return fmt.Errorf("%d characters: at least %d are needed so it cannot be guessed (generate one with: %s)", len(t), MinTokenLen, tokenAdvice)
	}
	if len(t) > MaxTokenLen {
		return fmt.Errorf("%d characters: at most %d", len(t), MaxTokenLen)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return fmt.Errorf("has %s at byte %d: a token is printable ASCII without spaces (it travels in the Authorization header; generate one with: %s)", describeByte(t[i]), i, tokenAdvice)
		}
	}
	return nil
}

// thresholdRange checks a threshold: finite and within ±MaxThreshold.
func (c *Config) thresholdRange(key string, f *float64) error {
	if f == nil {
		return nil
	}
	if math.IsNaN(*f) || math.IsInf(*f, 0) {
		return c.errorAt(key, "%v is not a finite number", *f)
	}
	return c.floatRange(key, *f, -MaxThreshold, MaxThreshold,
		"the score is the forest's raw margin (a logit, typically within ±20); a threshold this far out passes or fails every part")
}
