package gqlws

// CloseError, returned by an InitFunc, closes the socket with Code and
// Reason instead of acknowledging it. The error's message goes to legacy
// clients in connection_error.
type CloseError struct {
	Code    int
	Reason  string
	Message string
}

func (e *CloseError) Error() string { return e.Message }

type textWriter interface {
	WriteText(parts ...[]byte) error
}

// corker is implemented by sockets that can collect several writes into
// one system call (gorillaws): a writer's visit corks around its writes.
type corker interface {
	Cork()
	Uncork() error
}

// blockNotifier is implemented by sockets that say when a write has to
// wait for the peer (gorillaws); their drains run on the transport's
// writers. Others get a goroutine per drain, which may wait as long as it
// must.
type blockNotifier interface {
	OnBlockingWrite(before, after func())
}

// readWaiter is implemented by sockets whose reader can wait for input
// without reading it (gorillaws).
type readWaiter interface {
	// WaitReadable blocks until the next message can be read, or reading
	// would fail; false means it cannot wait and the caller reads at once.
	WaitReadable() bool
}
