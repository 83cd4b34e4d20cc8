//go:build linux

package gorillaws

import (
	"net"
	"syscall"
	"unsafe"
)

// rawConn returns the socket under nc for readability waits, or nil.
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, isTCP := nc.(*net.TCPConn); !isTCP {
		if _, isUnix := nc.(*net.UnixConn); !isUnix {
			return nil
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// peekReadable is a syscall.RawConn.Read callback: it looks at one byte
// without taking it (MSG_PEEK) and reports done when there is input, the
// end of the stream or an error, and not done (wait for the poller) when
// the socket has nothing yet. It runs on the waiting goroutine's stack, so
// it stays small: a raw system call, no allocation.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// tryWrite writes what the socket takes without waiting and returns how
// much that was; a full send buffer, a deadline already past or an error
// leave the rest to the caller's ordinary write, which waits or reports.
func tryWrite(rc syscall.RawConn, p []byte) int {
	n := 0
	_ = rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				break
			}
			n += k
		}
		return true
	})
	return n
}
