// Command testapp is the application Keystone's tests deploy: a static HTTP
// server whose behaviour comes from /behaviour.json in its image, so that a
// commit changing one line of that file is a real update.
//
// Run without arguments it serves; "build-step" is what a Dockerfile RUN
// step calls to make a build print, wait or fail.
package main

import (
	"encoding/json"
	"fmt"
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
}

func main() {
	b := load()
	if len(os.Args) > 1 && os.Args[1] == "build-step" {
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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(b.Health)
		fmt.Fprintf(w, "health=%d\n", b.Health)
	})
	mux.HandleFunc("GET /env/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.PathValue("name")))
	})
	port := os.Getenv("PORT")
	fmt.Printf("testapp %s listening on :%s\n", strings.TrimSpace(b.Version), port)
	if err := http.ListenAndServe(":"+port, mux); err != nil {
		fmt.Println("testapp:", err)
		os.Exit(1)
	}
}
