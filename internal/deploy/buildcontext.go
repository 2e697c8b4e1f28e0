package deploy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// maxDockerfile bounds the Dockerfile read into memory to label it.
const maxDockerfile = 1 << 20

// errDockerfileNotRegular is returned when the Dockerfile is a link or a
// directory in the commit.
var errDockerfileNotRegular = errors.New("the Dockerfile is not a regular file")

// labelledContext streams the build context tar from src, appending one
// LABEL instruction with labels to the Dockerfile at dockerfile on the way.
//
// The engine's own Labels build option would add one LABEL step per label,
// each an image commit (about a second each on some storage drivers); one
// instruction costs one step. The step numbers the user sees are unchanged
// up to their last instruction.
//
// Close the returned reader when done with it; wait then returns the error
// that ended the copy (nil when the whole context was read).
func labelledContext(src io.Reader, dockerfile string, labels map[string]string) (rc io.ReadCloser, wait func() error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := copyLabelled(pw, src, path.Clean(dockerfile), labels)
		pw.CloseWithError(err)
		done <- err
	}()
	var once sync.Once
	var result error
	return pr, func() error {
		once.Do(func() { result = <-done })
		return result
	}
}

func copyLabelled(dst io.Writer, src io.Reader, dockerfile string, labels map[string]string) error {
	tr := tar.NewReader(src)
	tw := tar.NewWriter(dst)
	found := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the build context: %w", err)
		}
		if path.Clean(hdr.Name) != dockerfile {
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return errDockerfileNotRegular
		}
		found = true
		content, err := io.ReadAll(io.LimitReader(tr, maxDockerfile+1))
		if err != nil {
			return err
		}
		if len(content) > maxDockerfile {
			return fmt.Errorf("the Dockerfile is larger than %d bytes", maxDockerfile)
		}
		content = append(content, labelInstruction(content, labels)...)
		hdr.Size = int64(len(content))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(content); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("the Dockerfile %s is not in the build context", dockerfile)
	}
	return tw.Close()
}

// labelInstruction returns the text to append to a Dockerfile: a line break
// if it lacks one, then LABEL with every label quoted, in a stable order.
func labelInstruction(dockerfile []byte, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	if len(dockerfile) > 0 && dockerfile[len(dockerfile)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("LABEL")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, strconv.Quote(labels[k]))
	}
	b.WriteByte('\n')
	return b.String()
}
