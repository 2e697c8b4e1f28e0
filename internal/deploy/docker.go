package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/keystone-app/keystone/internal/store"
)

// Docker is the part of the Docker Engine API the engine uses. The client of
// NewDockerClient implements it; tests use the real engine.
type Docker interface {
	Ping(ctx context.Context) (types.Ping, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	BuildCancel(ctx context.Context, id string) error
	// DialHijack attaches a BuildKit session (POST /session).
	DialHijack(ctx context.Context, url, proto string, meta map[string][]string) (net.Conn, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageRemove(ctx context.Context, imageID string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig,
		networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	NetworkAPI
}

// NewDockerClient connects to the engine DOCKER_HOST and friends name,
// speaking the API version the engine offers.
func NewDockerClient() (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// Labels on every container and image Keystone makes (SPEC §6). Keystone
// never touches a container or image without LabelApp, and reconciliation
// and pruning also require this database's LabelInstance.
const (
	LabelApp        = "io.keystone.app"        // owner/repo/app
	LabelSHA        = "io.keystone.sha"        // the 40-hex commit
	LabelDeployment = "io.keystone.deployment" // the deployment id
	LabelInstance   = "io.keystone.instance"   // the Keystone database's instance id
	LabelPreview    = "io.keystone.preview"    // a preview's pull request number
)

// labels returns the labels of deployment d of app.
func (e *Engine) labels(instance string, app store.App, d store.Deployment) map[string]string {
	l := map[string]string{
		LabelApp:        app.Key(),
		LabelSHA:        d.SHA,
		LabelDeployment: strconv.FormatInt(d.ID, 10),
		LabelInstance:   instance,
	}
	if app.Preview() {
		l[LabelPreview] = strconv.Itoa(app.PRNumber)
	}
	return l
}

// ownFilter selects what this Keystone made: both labels, and more pairs
// ("key=value") when given.
func ownFilter(instance string, more ...string) filters.Args {
	f := filters.NewArgs(filters.Arg("label", LabelApp), filters.Arg("label", LabelInstance+"="+instance))
	for _, m := range more {
		f.Add("label", m)
	}
	return f
}

// ours reports whether labels carry Keystone's app label and this instance.
func ours(instance string, labels map[string]string) bool {
	return labels[LabelApp] != "" && labels[LabelInstance] == instance
}

var nameJunk = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes s usable in image and container names.
func slug(s string) string {
	s = strings.Trim(nameJunk.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if s == "" {
		return "x"
	}
	return s
}

// imageRef is the tag of the image of app at sha, unique to this instance.
func imageRef(instance string, app store.App, sha string) string {
	return fmt.Sprintf("keystone-%s/%s/%s/%s:%s", shortInstance(instance), slug(app.Owner), slug(app.Repo), app.Name, sha)
}

// containerName names deployment d's container; the instance keeps two
// Keystones on one engine from colliding.
func containerName(instance string, app store.App, d store.Deployment) string {
	return fmt.Sprintf("keystone-%s-%s-%s-%s-%d", shortInstance(instance), slug(app.Owner), slug(app.Repo), app.Name, d.ID)
}

func shortInstance(instance string) string {
	s := strings.ReplaceAll(instance, "-", "")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}

// deploymentOf returns the deployment id a container or image is labelled with.
func deploymentOf(labels map[string]string) int64 {
	id, _ := strconv.ParseInt(labels[LabelDeployment], 10, 64)
	return id
}
