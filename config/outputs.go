package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/history"

	"github.com/segad-edge/segad-edge/plc/modbus"
	"github.com/segad-edge/segad-edge/plc/opcua"
)

// HistoryConfig is the result history (every result, for queries, labels,
// threshold tuning and training): an embedded SQLite file by default, or a
// plant's shared PostgreSQL. Its writes are batched off the hot path; a slow
// or broken store never stops inspection (the outbox stays the delivery
// guarantee) and shows in health, metrics and the log.
type HistoryConfig struct {
	// Enabled records every result (default true).
	Enabled *bool `yaml:"enabled"`
	// Path is the SQLite file; default history.db beside mqtt.outbox.path.
	Path string `yaml:"path"`
	// URL, when set, uses PostgreSQL instead: postgres://user:pass@host/db.
	URL string `yaml:"url"`
	// Retention bounds the history; the oldest unlabelled results go first
	// (labelled results are training data and are kept).
	Retention RetentionConfig `yaml:"retention"`
	// QueueSize is how many results may wait for the writer (default 10000).
	QueueSize int `yaml:"queue_size"`
}

// RetentionConfig bounds the history by age, rows and bytes (negative
// turns a bound off).
type RetentionConfig struct {
	// MaxAge (default 2160h = 90 days, at least 1h).
	MaxAge time.Duration `yaml:"max_age"`
	// MaxRows (default 2,000,000, at least 1000).
	MaxRows int64 `yaml:"max_rows"`
	// MaxBytes (default 2 GiB, at least 1 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
}

// StoreConfig is the history store's configuration for this section
// (the writer's batching and timeouts keep the store's own defaults).
func (h HistoryConfig) StoreConfig() history.Config {
	c := history.Config{Path: h.Path, URL: h.URL, MaxAge: h.Retention.MaxAge, MaxRows: h.Retention.MaxRows,
		MaxBytes: h.Retention.MaxBytes, QueueSize: h.QueueSize}
	if h.URL != "" {
		c.Path = "" // PostgreSQL instead of the default SQLite file
	}
	return c
}

// On reports whether the history records results.
func (h HistoryConfig) On() bool { return h.Enabled == nil || *h.Enabled }

// PLCConfig holds the PLC-facing servers, outputs beside MQTT (both off by
// default, loopback when on).
type PLCConfig struct {
	// Modbus is the Modbus TCP server with the vision-system handshake.
	Modbus modbus.Config `yaml:"modbus"`
	// OPCUA is the read-only OPC UA server (Machine Vision shaped).
	OPCUA opcua.Config `yaml:"opcua"`
}

func (c *Config) outputDefaults() {
	h := &c.History
	if h.Enabled == nil {
		on := true
		h.Enabled = &on
	}
	if h.Path == "" && h.URL == "" {
		dir := "."
		if c.MQTT.Outbox.Path != "" {
			dir = filepath.Dir(c.MQTT.Outbox.Path)
		}
		h.Path = filepath.Join(dir, "history.db")
	}
	if h.Retention.MaxAge == 0 {
		h.Retention.MaxAge = history.DefaultMaxAge
	}
	if h.Retention.MaxRows == 0 {
		h.Retention.MaxRows = history.DefaultMaxRows
	}
	if h.Retention.MaxBytes == 0 {
		h.Retention.MaxBytes = history.DefaultMaxBytes
	}
	if h.QueueSize == 0 {
		h.QueueSize = history.DefaultQueueSize
	}
	fillZero(&c.PLC.Modbus, modbus.Defaults())
	c.PLC.OPCUA.ApplyDefaults()
}

// fillZero sets every zero field of *dst to the same field of def (the
// section's own documented defaults), so a YAML file naming one key keeps
// the defaults of the others.
func fillZero[T any](dst *T, def T) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(def)
	for i := 0; i < d.NumField(); i++ {
		if f := d.Field(i); f.CanSet() && f.IsZero() {
			f.Set(s.Field(i))
		}
	}
}

func (c *Config) validateOutputs() error {
	var errs []error
	h := c.History
	if h.On() {
		if h.URL != "" && !strings.HasPrefix(h.URL, "postgres://") && !strings.HasPrefix(h.URL, "postgresql://") {
			errs = append(errs, c.errorAt("history.url", "want a postgres:// or postgresql:// URL"))
		}
		if h.Retention.MaxAge > 0 && h.Retention.MaxAge < time.Hour {
			errs = append(errs, c.errorAt("history.retention.max_age", "%v is under 1h (a negative value turns the bound off)", h.Retention.MaxAge))
		}
		if h.Retention.MaxRows > 0 && h.Retention.MaxRows < 1000 {
			errs = append(errs, c.errorAt("history.retention.max_rows", "%d is under 1000 (a negative value turns the bound off)", h.Retention.MaxRows))
		}
		if h.Retention.MaxBytes > 0 && h.Retention.MaxBytes < 1<<20 {
			errs = append(errs, c.errorAt("history.retention.max_bytes", "%d is under 1 MiB (a negative value turns the bound off)", h.Retention.MaxBytes))
		}
		errs = append(errs, c.intRange("history.queue_size", int64(h.QueueSize), 100, 1_000_000,
			"results waiting for the history writer; beyond it results are not recorded (counted, in health)"))
	}
	if c.PLC.Modbus.Enabled {
		if err := c.PLC.Modbus.Validate(); err != nil {
			errs = append(errs, c.sectionError("plc.modbus", err))
		}
	}
	if c.PLC.OPCUA.Enabled {
		if err := c.PLC.OPCUA.Validate(); err != nil {
			errs = append(errs, c.sectionError("plc.opcua", err))
		}
	}
	return errors.Join(errs...)
}
