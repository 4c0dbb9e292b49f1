package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/segad-edge/segad-edge/console/auth"
)

// newUserCmd is `segad user`: console user tools.
func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Console users: make password hashes for console.users"}
	cmd.AddCommand(&cobra.Command{
		Use:   "hash",
		Short: "Print a bcrypt hash of a password for console.users[].password_hash",
		Long: `Prints a bcrypt hash (cost 12) of a password for console.users[].password_hash.
On a terminal it asks twice without echo; otherwise it reads one line from stdin:
  printf '%s\n' "$PASSWORD" | segad user hash
Passwords are at least 10 characters and at most 72 bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUserHash(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	})
	return cmd
}

// maxPasswordLine bounds the line read from a pipe.
const maxPasswordLine = 4096

// runUserHash reads the password (prompting twice without echo when in is
// a terminal, else one line) and writes its hash to out.
func runUserHash(in io.Reader, out, prompt io.Writer) error {
	var pw string
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(p string) (string, error) {
			fmt.Fprint(prompt, p)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(prompt)
			if err != nil {
				return "", fmt.Errorf("read password from the terminal: %w", err)
			}
			return string(b), nil
		}
		first, err := read("Password: ")
		if err != nil {
			return err
		}
		second, err := read("Again: ")
		if err != nil {
			return err
		}
		if first != second {
			return errors.New("the passwords differ: nothing printed, try again")
		}
		pw = first
	} else {
		r := bufio.NewReaderSize(io.LimitReader(in, maxPasswordLine+1), maxPasswordLine+1)
		line, err := r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		if len(line) > maxPasswordLine {
			return fmt.Errorf("the password line on stdin is longer than %d bytes", maxPasswordLine)
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return errors.New("no password on stdin: pipe one line, e.g. printf '%s\\n' \"$PASSWORD\" | segad user hash")
		}
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, h)
	return err
}
