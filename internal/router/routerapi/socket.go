package routerapi

import (
	"errors"
	"io/fs"
	"os"
)

// removeIfSocket removes path only when it is a socket: a mistyped
// KEYSTONE_PROXY_ADMIN must not delete a regular file.
func removeIfSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return errors.New("not a socket")
	}
	return os.Remove(path)
}

func chmod(path string, mode os.FileMode) error { return os.Chmod(path, mode) }
