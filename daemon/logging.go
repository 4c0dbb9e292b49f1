package daemon

import (
	"io"
	"log/slog"
	"strings"
)

// LogLevel is the level of the logger NewLogger built; Reload changes it.
var LogLevel *slog.LevelVar

// ParseLevel maps debug|info|warn|error to a slog level (info otherwise).
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger builds the daemon's structured logger (text or JSON) and makes
// its level reloadable. Text without timestamps suits journald, which adds
// its own; JSON suits log shippers.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	LogLevel = new(slog.LevelVar)
	LogLevel.Set(ParseLevel(level))
	opts := &slog.HandlerOptions{Level: LogLevel}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
