package history

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// classify names the cause of a database error in words an operator acts
// on; Health and the logs lead with it.
func classify(err error) string {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrFull:
			return "disk full"
		case sqlite3.ErrReadonly:
			return "read-only"
		case sqlite3.ErrPerm, sqlite3.ErrAuth, sqlite3.ErrCantOpen:
			return "cannot open the database file (permissions or read-only folder)"
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return "database busy (another writer holds the lock)"
		case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
			return "database damaged"
		case sqlite3.ErrIoErr:
			if errors.Is(se.SystemErrno, syscall.ENOSPC) {
				return "disk full"
			}
			if errors.Is(se.SystemErrno, syscall.EROFS) {
				return "read-only"
			}
			return "disk i/o error"
		case sqlite3.ErrConstraint, sqlite3.ErrMismatch, sqlite3.ErrTooBig, sqlite3.ErrRange:
			return "result refused"
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "53100":
			return "disk full"
		case pe.Code == "25006":
			return "read-only"
		case strings.HasPrefix(pe.Code, "53"):
			return "database out of resources"
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57"):
			return "database unreachable"
		case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"):
			return "result refused"
		case strings.HasPrefix(pe.Code, "28"):
			return "database login refused"
		case strings.HasPrefix(pe.Code, "42"):
			return "database schema or permissions"
		}
		return "database error " + pe.Code
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "disk full"
	case errors.Is(err, syscall.EROFS):
		return "read-only"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied"
	case errors.Is(err, ErrNewerSchema), errors.Is(err, errNotHistory):
		return "wrong database"
	case errors.Is(err, syscall.ENOTDIR):
		return "cannot create the database folder (a part of the path is a file)"
	}
	if networkError(err) {
		return "database unreachable"
	}
	return "write failed"
}

// networkError reports whether err is about reaching a database server.
// A bare syscall.Errno satisfies net.Error (it has Timeout and Temporary),
// so "is a net.Error" alone would call every file-system error (ENOTDIR,
// EIO, EMFILE) of a SQLite history "unreachable"; an errno counts only
// inside a network operation or when it is a network errno.
func networkError(err error) bool {
	var ope *net.OpError
	var dnse *net.DNSError
	var ce *pgconn.ConnectError
	if errors.As(err, &ope) || errors.As(err, &dnse) || errors.As(err, &ce) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	var errno syscall.Errno
	var ne net.Error
	return errors.As(err, &ne) && !errors.As(err, &errno)
}

// environmental reports whether err is about the database's surroundings
// (disk, permissions, network, locks), so the same batch may succeed later,
// rather than about the data of one result.
func environmental(err error) bool {
	return classify(err) != "result refused"
}

// permanent reports whether Open must fail rather than keep retrying: the
// database is one this build must not write.
func permanent(err error) bool {
	return errors.Is(err, ErrNewerSchema) || errors.Is(err, errNotHistory)
}

func nowText() string { return time.Now().UTC().Format(time.RFC3339Nano) }
