package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestProgressLines: BuildKit's status messages become plain log lines,
// output split at line ends even when a line arrives in pieces, and the
// first failed step is what the failure names.
func TestProgressLines(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }
	msgs := []*controlapi.StatusResponse{
		{Vertexes: []*controlapi.Vertex{{Digest: "a", Name: "[1/2] COPY app /app", Started: ts(0), Completed: ts(0), Cached: true}}},
		{Vertexes: []*controlapi.Vertex{{Digest: "b", Name: "[2/2] RUN make", Started: ts(0)}},
			Logs: []*controlapi.VertexLog{{Vertex: "b", Msg: []byte("compil")}}},
		{Logs: []*controlapi.VertexLog{{Vertex: "b", Msg: []byte("ing\nlinking\r\nwarn")}}},
		{Vertexes: []*controlapi.Vertex{{Digest: "b", Name: "[2/2] RUN make", Started: ts(0), Completed: ts(1500 * time.Millisecond),
			Error: "executor failed running [/bin/sh -c make]: exit code: 2"}}},
	}
	var stream bytes.Buffer
	for _, m := range msgs {
		raw, err := m.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		aux, _ := json.Marshal(raw) // []byte: base64, as the engine sends it
		line, _ := json.Marshal(map[string]json.RawMessage{"id": json.RawMessage(`"moby.buildkit.trace"`), "aux": aux})
		stream.Write(append(line, '\n'))
	}
	stream.WriteString(`{"errorDetail":{"message":"executor failed running [/bin/sh -c make]: exit code: 2"},"error":"executor failed running [/bin/sh -c make]: exit code: 2"}` + "\n")
	var log bytes.Buffer
	p := newProgress(&log)
	_, failed, err := p.read(context.Background(), &stream)
	p.flush()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"#1 [1/2] COPY app /app CACHED",
		"#2 [2/2] RUN make",
		"#2 compiling",
		"#2 linking",
		"#2 warn",
		"#2 ERROR: executor failed running [/bin/sh -c make]: exit code: 2",
	}, "\n") + "\n"
	if log.String() != want {
		t.Errorf("log\n%s\nwant\n%s", log.String(), want)
	}
	if failed == nil || failed.describe("") != "step 2/2 (RUN make) exited 2" {
		t.Errorf("failure %+v", failed)
	}
}
