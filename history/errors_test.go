package history

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestClassifyErrno: a bare syscall.Errno satisfies net.Error, which used
// to make every file-system error of a SQLite history "database
// unreachable" in health (a history path under a regular file read
// "history: database unreachable: create folder ...: not a directory").
func TestClassifyErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("history: create folder: %w", &fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.ENOTDIR}),
			"cannot create the database folder (a part of the path is a file)"},
		{fmt.Errorf("wrapped: %w", &fs.PathError{Op: "write", Path: "/x", Err: syscall.EIO}), "write failed"},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.EMFILE}, "write failed"},
		{fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
			"database unreachable"},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "database unreachable"},
		{&net.DNSError{Err: "no such host", Name: "historian"}, "database unreachable"},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), "database unreachable"},
		{fmt.Errorf("x: %w", syscall.ENOSPC), "disk full"},
		{fmt.Errorf("x: %w", syscall.EACCES), "permission denied"},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
