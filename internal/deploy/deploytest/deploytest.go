// Package deploytest sets up what tests of the deploy engine need, all
// real but GitHub's REST API: a fresh migrated database, the fake GitHub with
// an installation, a git server holding the installation's repository, the
// Docker engine, and a block of host ports. When the test ends it removes
// every container and image carrying the test database's instance id.
package deploytest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/keystone-app/keystone/internal/config"
	"github.com/keystone-app/keystone/internal/github/githubtest"
	"github.com/keystone-app/keystone/internal/gittest"
	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/store/storetest"
	"github.com/keystone-app/keystone/internal/testwait"
)

// Installation is the id of the fake GitHub's installation owning Repo.
const Installation int64 = 42

// Env is one test's world.
type Env struct {
	GitHub    *githubtest.Server
	Git       *gittest.Server
	Repo      *gittest.Repo
	Docker    *client.Client
	DBURL     string
	Store     *store.Store
	Instance  string // the database's instance id (label io.keystone.instance)
	PortRange config.PortRange
}

// Docker returns a client of the engine the environment names. Unreachable,
// it fails the test under CI=true and skips it otherwise.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Ping(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("deploytest: Docker is required with CI=true: %v", err)
		}
		t.Skipf("deploytest: Docker unreachable: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// New makes a test's world with repository octo/<repo>.
func New(t testing.TB, repo string) *Env {
	t.Helper()
	e := &Env{Docker: Docker(t)}
	e.DBURL = storetest.Fresh(t)
	st, err := store.Open(context.Background(), e.DBURL, store.MinConns(64))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.Store = st
	if e.Instance, err = st.InstanceID(context.Background()); err != nil {
		t.Fatal(err)
	}
	full := "octo/" + repo
	e.GitHub = githubtest.New(t)
	e.GitHub.AddInstallation(Installation, "octo", full)
	e.Git = gittest.NewServer(t, e.GitHub)
	e.Repo = e.Git.CreateRepo(t, full, Installation, e.GitHub.RepositoryID(full))
	e.PortRange = FreePortRange(t, 40)
	t.Cleanup(func() { e.RemoveAll(t) })
	return e
}

// FreePortRange returns n consecutive ports, none listening now, from a
// random place below the kernel's ephemeral range, so that tests running at
// once rarely meet and no connection's own local port (which the kernel
// takes from the ephemeral range) can hold one of them when Docker binds it.
func FreePortRange(t testing.TB, n int) config.PortRange {
	t.Helper()
	const low = 10000
	high := ephemeralStart() // exclusive
	if high-low < 10*n {
		t.Fatalf("deploytest: no room for %d ports between %d and the ephemeral range at %d", n, low, high)
	}
	for range 50 {
		r, _ := rand.Int(rand.Reader, big.NewInt(int64((high-low)/n)))
		first := low + int(r.Int64())*n
		free := true
		for p := first; p < first+n && free; p++ {
			l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return config.PortRange{First: first, Last: first + n - 1}
		}
	}
	t.Fatal("deploytest: no free port range")
	return config.PortRange{}
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	first, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return first
}

// Filter selects this instance's containers or images, with more labels
// ("key=value") when given.
func (e *Env) Filter(more ...string) filters.Args {
	f := filters.NewArgs(filters.Arg("label", "io.keystone.instance="+e.Instance))
	for _, m := range more {
		f.Add("label", m)
	}
	return f
}

// Containers lists this instance's containers, running or not.
func (e *Env) Containers(t testing.TB, labels ...string) []container.Summary {
	t.Helper()
	list, err := e.Docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: e.Filter(labels...)})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// Images lists this instance's images.
func (e *Env) Images(t testing.TB, labels ...string) []image.Summary {
	t.Helper()
	list, err := e.Docker.ImageList(context.Background(), image.ListOptions{Filters: e.Filter(labels...)})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// RemoveAll removes this instance's containers and images.
func (e *Env) RemoveAll(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if list, err := e.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: e.Filter()}); err == nil {
		for _, c := range list {
			_ = e.Docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	}
	if list, err := e.Docker.ImageList(ctx, image.ListOptions{Filters: e.Filter()}); err == nil {
		for _, img := range list {
			_, _ = e.Docker.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	}
}

// Get asks the app on host port port for path and returns the status and body.
func Get(port int, path string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Serves reports whether the app on port answers GET / with version=want.
func Serves(port int, want string) bool {
	status, body, err := Get(port, "/")
	return err == nil && status == 200 && strings.TrimSpace(body) == "version="+want
}

// Eventually is testwait.Eventually, kept here for the many callers.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	testwait.Eventually(t, timeout, "deploytest: "+what, cond)
}

// WaitFinished waits until deployment id is finished and returns it.
func (e *Env) WaitFinished(t testing.TB, id int64, timeout time.Duration) store.Deployment {
	t.Helper()
	var d store.Deployment
	Eventually(t, timeout, fmt.Sprintf("deployment %d finished", id), func() (bool, error) {
		var err error
		d, err = e.Store.Deployment(context.Background(), id)
		return err == nil && d.Finished(), fmt.Errorf("state %s, step %s, err %v", d.State, d.Step, err)
	})
	return d
}

// Deployments returns every deployment of the app named name, oldest first.
func (e *Env) Deployments(t testing.TB, name string) []store.Deployment {
	t.Helper()
	rows, err := e.Store.Pool().Query(context.Background(), `
		SELECT d.id FROM deployments d JOIN apps a ON a.id = d.app_id WHERE a.name = $1 ORDER BY d.id`, name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := make([]store.Deployment, 0, len(ids))
	for _, id := range ids {
		d, err := e.Store.Deployment(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// Reply waits until Keystone's reply to comment c (its own comment carrying
// the reply marker of c) contains want, and returns the reply's body.
func (e *Env) Reply(t testing.TB, c githubtest.Comment, want string, timeout time.Duration) string {
	t.Helper()
	marker := fmt.Sprintf("<!-- keystone:thread=reply:%d -->", c.ID)
	var body string
	Eventually(t, timeout, fmt.Sprintf("a reply to %q containing %q", c.Body, want), func() (bool, error) {
		for _, r := range e.GitHub.Comments(e.Repo.FullName, c.Issue) {
			if r.User == e.GitHub.Slug+"[bot]" && strings.Contains(r.Body, marker) {
				body = r.Body
				return strings.Contains(body, want), fmt.Errorf("reply so far: %s", body)
			}
		}
		return false, errors.New("no reply yet")
	})
	return body
}

// App returns the app named name of the repository.
func (e *Env) App(t testing.TB, name string) store.App {
	t.Helper()
	a, err := e.Store.AppByName(context.Background(), e.Repo.Owner, e.Repo.Name, name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Log returns the stored log of a deployment.
func (e *Env) Log(t testing.TB, id int64) []string {
	t.Helper()
	lines, err := e.Store.DeploymentLog(context.Background(), id, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

// Files returns the test app's files with behaviour b plus a .keystone.yml.
func Files(t testing.TB, keystoneYML []byte, b gittest.Behaviour) map[string][]byte {
	t.Helper()
	files := gittest.AppFiles(t, "", b)
	files[".keystone.yml"] = keystoneYML
	return files
}
