package main

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type closed struct {
	rps float64
	p50 time.Duration
}

// overheadRun measures the direct path and each front in turn, slice after
// slice, so that machine noise lands on all of them.
func overheadRun(fronts []string, direct string, d time.Duration) (closed, []closed) {
	const conc, rounds = 16, 6
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	type side struct {
		base, host string
		lat        []time.Duration
	}
	sides := []*side{{base: direct}}
	for _, f := range fronts {
		sides = append(sides, &side{base: f, host: benchHost})
	}
	for _, s := range sides { // warm-up
		closedLoop(c, s.base, s.host, conc, 500*time.Millisecond)
	}
	slice := d / rounds
	for range rounds {
		for _, s := range sides {
			s.lat = append(s.lat, closedLoop(c, s.base, s.host, conc, slice)...)
		}
	}
	stat := func(s *side) closed { return closed{float64(len(s.lat)) / d.Seconds(), pct(s.lat, 50)} }
	var out []closed
	for _, s := range sides[1:] {
		out = append(out, stat(s))
	}
	return stat(sides[0]), out
}

func closedLoop(c *http.Client, base, host string, conc int, d time.Duration) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				if code, _, err := get(c, base, host, "/"); err == nil && code == 200 {
					lat = append(lat, time.Since(t0))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

func pct(l []time.Duration, p int) time.Duration {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[len(l)*p/100]
}

// switcher runs the open-loop load and watches for the new version.
type switcher struct {
	front string
	rate  int

	stop                   chan struct{}
	wg                     sync.WaitGroup
	sent, failed, connErrs atomic.Int64

	mu       sync.Mutex
	want     string
	since    time.Time
	firstAt  time.Time
	keep     *http.Client
	freshCli *http.Client
}

func (s *switcher) startLoad() {
	s.stop = make(chan struct{})
	s.keep = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	s.freshCli = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	s.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(s.rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			c := s.keep
			if i%2 == 1 {
				c = s.freshCli
			}
			s.wg.Go(func() { s.one(c) })
		}
	})
}

func (s *switcher) one(c *http.Client) {
	s.sent.Add(1)
	code, body, err := get(c, s.front, benchHost, "/")
	switch {
	case err != nil && isConnErr(err):
		s.connErrs.Add(1)
	case err != nil || code != 200:
		s.failed.Add(1)
	default:
		s.mu.Lock()
		if body == s.want && s.firstAt.IsZero() {
			s.firstAt = time.Now()
		}
		s.mu.Unlock()
	}
}

func isConnErr(err error) bool {
	var ue *url.Error
	var ne *net.OpError
	return errors.As(err, &ue) && errors.As(err, &ne)
}

// watch starts looking for the first answer from want after since.
func (s *switcher) watch(want string, since time.Time) {
	s.mu.Lock()
	s.want, s.since, s.firstAt = want, since, time.Time{}
	s.mu.Unlock()
}

func (s *switcher) firstNew() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstAt.IsZero() {
		return -1
	}
	return s.firstAt.Sub(s.since)
}

// slow launches n slow requests; the returned func waits for them and
// counts those answered 200.
func (s *switcher) slow(n int, d time.Duration) func() int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, _, err := get(s.keep, s.front, benchHost, "/slow?ms="+itoa(int(d.Milliseconds()))); err == nil && code == 200 {
				ok.Add(1)
			}
		})
	}
	return func() int { wg.Wait(); return int(ok.Load()) }
}

func (s *switcher) stopLoad() (sent, failed, connErrs int) {
	close(s.stop)
	s.wg.Wait()
	return int(s.sent.Load()), int(s.failed.Load()), int(s.connErrs.Load())
}

func itoa(n int) string { return strconv.Itoa(n) }
