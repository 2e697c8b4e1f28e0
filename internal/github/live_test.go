package github_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/keystone-app/keystone/internal/github"
	"github.com/keystone-app/keystone/internal/github/githubtest"
)

// TestLiveBeforeAndAfterTheApp: an empty Live refuses every call with
// ErrNotConfigured and is not Ready; once Set (while callers are at it) it
// is Ready and speaks as the App.
func TestLiveBeforeAndAfterTheApp(t *testing.T) {
	gh := githubtest.New(t)
	gh.AddInstallation(5, "octo", "web")
	live := github.NewLive(nil)
	if live.Configured() || live.AppID() != 0 {
		t.Fatal("an empty Live says it is configured")
	}
	if _, err := live.InstallationToken(t.Context(), 5); !errors.Is(err, github.ErrNotConfigured) {
		t.Fatalf("token before the App: %v", err)
	}
	if _, _, err := live.ListHookDeliveries(t.Context(), "", 10); !errors.Is(err, github.ErrNotConfigured) {
		t.Fatalf("deliveries before the App: %v", err)
	}
	select {
	case <-live.Ready():
		t.Fatal("Ready before Set")
	default:
	}
	app, err := github.New(github.Config{AppID: gh.AppID, PrivateKeyPEM: gh.PrivateKeyPEM, APIURL: gh.URL})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = live.Configured(); _, _ = live.AppSlug(t.Context()) })
	}
	live.Set(app)
	wg.Wait()
	<-live.Ready()
	if slug, err := live.AppSlug(t.Context()); err != nil || slug != gh.Slug || live.AppID() != gh.AppID {
		t.Fatalf("after Set: %q %v id %d", slug, err, live.AppID())
	}
	if tok, err := live.InstallationToken(t.Context(), 5); err != nil || tok == "" {
		t.Fatalf("token after Set: %v", err)
	}
}
