package deploy_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/deploy/deploytest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
)

// TestConcurrentFirstDeploysGetDistinctPorts: one push deploys 20 new apps
// at once; each gets its own port of the range, skipping one that another
// process holds on the host, and answers on it.
func TestConcurrentFirstDeploysGetDistinctPorts(t *testing.T) {
	const apps = 20
	h := newHarness(t, "many", func(o *options) { o.workers = apps })
	busy, err := net.Listen("tcp", ":"+strconv.Itoa(h.PortRange.First+2))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var yml strings.Builder
	yml.WriteString("apps:\n")
	for i := range apps {
		fmt.Fprintf(&yml, "  - {name: app-%d, branch: main, port: 8080, health_check_path: /healthz, memory: 32m}\n", i)
	}
	sha := h.push(t, "main", deploytest.Files(t, []byte(yml.String()), gittest.Behaviour{Version: "v1"}))
	ports := map[int]string{}
	for i := range apps {
		name := fmt.Sprintf("app-%d", i)
		d := h.deployOf(t, name, sha)
		mustState(t, d, store.StateSucceeded)
		port := h.App(t, name).HostPort
		if other, dup := ports[port]; dup {
			t.Errorf("%s and %s share port %d", other, name, port)
		}
		ports[port] = name
		if port == h.PortRange.First+2 || port < h.PortRange.First || port > h.PortRange.Last {
			t.Errorf("%s got port %d (range %s, busy %d)", name, port, h.PortRange, h.PortRange.First+2)
		}
		if !deploytest.Serves(port, "v1") {
			t.Errorf("%s does not answer on port %d", name, port)
		}
	}
}
