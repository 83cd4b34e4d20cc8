package bolt

import (
	"errors"
	"fmt"
	"io"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Backup writes a consistent copy of the data file at path, which no
// process holds open, to w. For a file a running gateway holds, take the
// copy through the gateway ((*Store).WriteTo), which does not stop writers.
func Backup(path string, w io.Writer) (int64, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return 0, fmt.Errorf("data file %s is in use by another switchboard process", path)
		}
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bbolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
