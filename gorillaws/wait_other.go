//go:build !linux

package gorillaws

import (
	"net"
	"syscall"
)

// rawConn: readability waits are implemented on Linux only; elsewhere the
// reader reads directly.
func rawConn(net.Conn) syscall.RawConn { return nil }

func peekReadable(uintptr) bool { return true }

func tryWrite(syscall.RawConn, []byte) int { return 0 }
