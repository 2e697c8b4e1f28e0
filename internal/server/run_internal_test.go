package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/testlog"
)

// A request still running when the shutdown's time is up is cut, and the
// stop is logged, instead of the error being dropped and the connection left
// open.
func TestStopHTTPCutsStragglersAndSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(entered)
		select { // a live-log stream: it ends when its client or Close does
		case <-r.Context().Done():
		case <-release:
		}
	})}
	defer close(release)
	go func() { _ = srv.Serve(ln) }()

	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-entered

	var buf testlog.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown's time is up at once
	stopHTTP(ctx, srv, logger)

	if !strings.Contains(buf.String(), "HTTP requests still running at shutdown") {
		t.Errorf("log = %q, want the unfinished shutdown reported", buf.String())
	}
	readErr := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); readErr <- err }()
	select {
	case <-readErr: // the connection was closed
	case <-time.After(10 * time.Second):
		t.Fatal("the straggling connection is still open after stopHTTP")
	}
}
