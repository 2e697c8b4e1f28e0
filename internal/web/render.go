package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keystone-app/keystone/internal/store"
	"github.com/keystone-app/keystone/internal/users"
	"github.com/keystone-app/keystone/templates"
)

// pages holds every page template, parsed once at start-up.
type pages struct {
	byName map[string]*template.Template
}

func parsePages(static *staticFiles) (*pages, error) {
	// The templates rendered as whole pages, each inside layout.html.
	pageFiles := []string{"login.html", "apps.html", "app.html", "deployment.html", "audit.html", "users.html", "error.html"}
	funcs := template.FuncMap{"static": static.url}
	p := &pages{byName: make(map[string]*template.Template, len(pageFiles))}
	for _, name := range pageFiles {
		t, err := template.New(name).Funcs(funcs).ParseFS(templates.HTML, "html/layout.html", "html/"+name)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		if t.Lookup("layout") == nil || t.Lookup("content") == nil {
			return nil, fmt.Errorf("parse template %s: it must define \"content\" for layout.html's \"layout\"", name)
		}
		p.byName[name] = t
	}
	return p, nil
}

// execute renders v's page into a buffer: a template error never sends half
// a page.
func (p *pages) execute(v view) ([]byte, error) {
	t, ok := p.byName[v.template()]
	if !ok {
		return nil, fmt.Errorf("no template %s", v.template())
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return nil, fmt.Errorf("render %s: %w", v.template(), err)
	}
	return buf.Bytes(), nil
}

// render writes v's page with status, filling the signed-in user's chrome.
func (h *Handler) render(c *gin.Context, status int, v view) {
	if si := current(c); si != nil {
		ch := v.chrome()
		ch.User = &UserView{Name: si.user.Name, Role: si.user.Role,
			CanDeploy: users.RoleAtLeast(si.user.Role, store.RoleDeployer), IsAdmin: si.user.Role == store.RoleAdmin}
		ch.CSRF = si.csrfToken()
	}
	body, err := h.pages.execute(v)
	if err != nil {
		h.log.Error("page not rendered", slog.String("path", c.Request.URL.Path), slog.String("error", err.Error()))
		c.String(http.StatusInternalServerError, "internal error: the page could not be rendered\n")
		return
	}
	c.Data(status, "text/html; charset=utf-8", body)
}

// refuse answers a request Keystone will not do, saying why.
func (h *Handler) refuse(c *gin.Context, status int, heading, message string) {
	h.render(c, status, &ErrorPage{Chrome: Chrome{Title: heading}, Status: status, Heading: heading, Message: message})
}

// fail is the one place errors become what a person sees: missing things
// are 404, anything else is logged with a reference and shown as 500.
func (h *Handler) fail(c *gin.Context, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.refuse(c, http.StatusNotFound, "Not found", "There is nothing here. It may have been removed, or the link is mistyped.")
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		c.Status(499) // the browser went away; nobody reads the answer
	default:
		ref := hex.EncodeToString(randomBytes(4))
		h.log.Error("status page request failed", slog.String("path", c.Request.URL.Path),
			slog.String("ref", ref), slog.String("error", err.Error()))
		h.refuse(c, http.StatusInternalServerError, "Something went wrong",
			"Keystone could not answer this request. The error is logged with reference "+ref+".")
	}
}

// staticFiles are templates/static, served with a content hash in the URL
// so that browsers may cache them for good.
type staticFiles struct {
	files map[string]staticFile
}

type staticFile struct {
	body        []byte
	hash        string
	contentType string
}

func loadStatic() (*staticFiles, error) {
	s := &staticFiles{files: map[string]staticFile{}}
	err := fs.WalkDir(templates.Static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(templates.Static, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		s.files[strings.TrimPrefix(p, "static/")] = staticFile{body: body, hash: hex.EncodeToString(sum[:6]), contentType: ct}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load static files: %w", err)
	}
	return s, nil
}

// url is the versioned URL of a static file; templates call it as static.
func (s *staticFiles) url(name string) (string, error) {
	f, ok := s.files[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return "/static/" + name + "?v=" + f.hash, nil
}

// serveStatic serves a static file: cached for a year when asked for by its
// current hash, revalidated otherwise.
func (h *Handler) serveStatic(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("file"), "/")
	f, ok := h.static.files[name]
	if !ok {
		c.String(http.StatusNotFound, "no such file\n")
		return
	}
	etag := `"` + f.hash + `"`
	if c.Query("v") == f.hash {
		c.Header("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		c.Header("Cache-Control", "no-cache")
	}
	c.Header("ETag", etag)
	if c.GetHeader("If-None-Match") == etag {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, f.contentType, f.body)
}
