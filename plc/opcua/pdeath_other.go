//go:build !linux

package opcua

import "os/exec"

// setParentDeath: elsewhere the server process ends when its stdin does.
func setParentDeath(*exec.Cmd) {}
