package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFile is routes.json under the state directory, written atomically
// (temporary file, fsync, rename) so a crash leaves the old or the new table.
type stateFile struct{ path string }

type stateDoc struct {
	Version int     `json:"version"`
	Routes  []Route `json:"routes"`
}

func openState(dir string) (*stateFile, error) {
	if dir == "" {
		return nil, errors.New("router: no state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("router state directory: %w", err)
	}
	return &stateFile{path: filepath.Join(dir, "routes.json")}, nil
}

func (s *stateFile) load() ([]Route, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read router state: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read router state %s: %w", s.path, err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("read router state %s: unknown version %d", s.path, doc.Version)
	}
	return doc.Routes, nil
}

func (s *stateFile) save(routes []Route) error {
	if routes == nil {
		routes = []Route{}
	}
	b, err := json.MarshalIndent(stateDoc{Version: 1, Routes: routes}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".routes-*.json")
	if err != nil {
		return fmt.Errorf("save router state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save router state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save router state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save router state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("save router state: %w", err)
	}
	// The rename itself is durable only once the directory is synced.
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("save router state: sync directory: %w", err)
		}
	}
	return nil
}
