package opcua

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill the server process when segad run
// dies, so a killed daemon never leaves its OPC UA port held.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
