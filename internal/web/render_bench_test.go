package web

import (
	"testing"
	"time"
)

// BenchmarkRenderOverview is the template's share of the overview: 100 apps.
func BenchmarkRenderOverview(b *testing.B) {
	static, err := loadStatic()
	if err != nil {
		b.Fatal(err)
	}
	p, err := parsePages(static)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	v := &AppsPage{Chrome: Chrome{Title: "Apps", Nav: "apps", User: &UserView{Name: "dee", Role: "deployer"}, CSRF: "x"}}
	for range 100 {
		t := at(now, now.Add(-time.Hour))
		c := Commit{Short: "abc1234", Full: "abc1234abc1234abc1234abc1234abc1234abc1", URL: "https://github.com/o/r/commit/abc"}
		t.Href = "/deployments/1"
		v.Apps = append(v.Apps, AppRow{App: Link{"/apps/bench/repo-001/web", "web"},
			Repository: Link{"https://github.com/bench/repo-001", "bench/repo-001"}, Branch: "main", Serving: &c,
			State: Badge{"succeeded", "ok"}, URL: &Link{"http://localhost:20001/", "http://localhost:20001/"},
			Health: "healthy (HTTP 200 after 1.2s)", LastDeploy: &t})
	}
	for b.Loop() {
		if _, err := p.execute(v); err != nil {
			b.Fatal(err)
		}
	}
}
