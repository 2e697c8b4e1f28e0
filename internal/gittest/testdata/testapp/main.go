// Command testapp is the application Keystone's tests deploy: a static HTTP
// server whose behaviour comes from /behaviour.json in its image, so that a
// commit changing one line of that file is a real update.
//
// Run without arguments it serves; "build-step" is what a Dockerfile RUN
// step calls to make a build print, wait or fail.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type behaviour struct {
	Version    string   `json:"version"`
	Health     int      `json:"health"`
	StartDelay string   `json:"start_delay"`
	Print      []string `json:"print"`
	PrintEnv   []string `json:"print_env"`
	Exit       *int     `json:"exit"`
	IgnoreTerm bool     `json:"ignore_term"`
	BuildPrint []string `json:"build_print"`
	BuildSleep string   `json:"build_sleep"`
	BuildExit  int      `json:"build_exit"`
	// BuildSecret names a build secret whose SHA-256 the build step writes
	// to /build-secret.sha256 (GET /build-secret answers it).
	BuildSecret string `json:"build_secret"`
}

func main() {
	b := load()
	if len(os.Args) > 1 && os.Args[1] == "build-step" {
		if len(os.Args) > 2 {
			b.BuildSecret = os.Args[2]
		}
		buildStep(b)
		return
	}
	serve(b)
}

func load() behaviour {
	b := behaviour{Health: 200}
	raw, err := os.ReadFile("/behaviour.json")
	if err == nil {
		err = json.Unmarshal(raw, &b)
	}
	if err != nil {
		fmt.Println("testapp: no usable /behaviour.json:", err)
	}
	return b
}

func buildStep(b behaviour) {
	for _, l := range b.BuildPrint {
		fmt.Println(l)
	}
	if b.BuildSecret != "" {
		secret, err := os.ReadFile("/run/secrets/" + b.BuildSecret)
		if err != nil {
			fmt.Println("testapp: no build secret:", err)
			os.Exit(2)
		}
		sum := sha256.Sum256(secret)
		if err := os.WriteFile("/build-secret.sha256", []byte(hex.EncodeToString(sum[:])), 0o644); err != nil {
			fmt.Println("testapp:", err)
			os.Exit(2)
		}
	}
	if d, err := time.ParseDuration(b.BuildSleep); err == nil {
		time.Sleep(d)
	}
	os.Exit(b.BuildExit)
}

func serve(b behaviour) {
	for _, l := range b.Print {
		fmt.Println(l)
	}
	for _, name := range b.PrintEnv {
		fmt.Printf("%s=%s\n", name, os.Getenv(name))
	}
	if b.Exit != nil {
		fmt.Println("testapp: exiting with", *b.Exit)
		os.Exit(*b.Exit)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range terms {
			if b.IgnoreTerm {
				fmt.Println("testapp: ignoring SIGTERM")
				continue
			}
			fmt.Println("testapp: stopping")
			os.Exit(0)
		}
	}()
	if d, err := time.ParseDuration(b.StartDelay); err == nil {
		fmt.Println("testapp: starting in", d)
		time.Sleep(d)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "version=%s\n", b.Version)
	})
	// /slow?for=5s answers like / after a while (at most a minute): a
	// request in flight while traffic moves away.
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("for"))
		time.Sleep(min(d, time.Minute))
		fmt.Fprintf(w, "version=%s\n", b.Version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(b.Health)
		fmt.Fprintf(w, "health=%d\n", b.Health)
	})
	mux.HandleFunc("GET /env/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.PathValue("name")))
	})
	mux.HandleFunc("GET /build-secret", func(w http.ResponseWriter, _ *http.Request) {
		b, err := os.ReadFile("/build-secret.sha256")
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	// /dial tries a TCP connection to addr: can this container reach it?
	mux.HandleFunc("GET /dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
		fmt.Fprintln(w, "connected")
	})
	// /rawsocket tries to open a raw socket, which needs CAP_NET_RAW.
	mux.HandleFunc("GET /rawsocket", func(w http.ResponseWriter, _ *http.Request) {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		syscall.Close(fd)
		fmt.Fprintln(w, "opened")
	})
	port := os.Getenv("PORT")
	fmt.Printf("testapp %s listening on :%s\n", strings.TrimSpace(b.Version), port)
	if err := http.ListenAndServe(":"+port, mux); err != nil {
		fmt.Println("testapp:", err)
		os.Exit(1)
	}
}
