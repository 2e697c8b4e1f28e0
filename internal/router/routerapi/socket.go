package routerapi

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// listenPrivate creates the socket under umask 0177, so that no other user
// can connect in the moment between its creation and a chmod.
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

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
