package githubtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/github/githubtest"
)

const callback = "https://keystone.example/login/github/callback"

// noRedirects is a client that shows each redirect instead of following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorizeRedirect asks the fake's authorize page and returns where it sends the
// browser back to (or fails with the page's status).
func authorizeRedirect(t *testing.T, srv *githubtest.Server, clientID, redirectURI string) (int, *url.URL) {
	t.Helper()
	q := url.Values{"client_id": {clientID}, "state": {"st-1"}}
	if redirectURI != "" {
		q.Set("redirect_uri", redirectURI)
	}
	resp, err := noRedirects.Get(srv.WebURL() + "/login/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp.StatusCode, loc
}

// exchange trades a code, asking for JSON.
func exchange(t *testing.T, srv *githubtest.Server, form url.Values) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.WebURL()+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("access_token: HTTP %d, %v", resp.StatusCode, err)
	}
	return out
}

func TestOAuthWebFlow(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddOAuthApp("client-1", "secret-1", callback)
	if status, _ := authorizeRedirect(t, srv, "client-1", callback); status != http.StatusUnauthorized {
		t.Fatalf("authorize with nobody signed in to GitHub: HTTP %d", status)
	}
	srv.SignIn("Octo-Cat")
	status, loc := authorizeRedirect(t, srv, "client-1", callback+"/deeper")
	code := loc.Query().Get("code")
	if status != http.StatusFound || !strings.HasPrefix(loc.String(), callback+"/deeper?") || code == "" || loc.Query().Get("state") != "st-1" {
		t.Fatalf("authorize: HTTP %d to %s", status, loc)
	}
	good := url.Values{"client_id": {"client-1"}, "client_secret": {"secret-1"}, "code": {code}, "redirect_uri": {callback + "/deeper"}}

	bad := url.Values{"client_id": {"client-1"}, "client_secret": {"wrong"}, "code": {code}}
	if got := exchange(t, srv, bad); got["error"] != "incorrect_client_credentials" {
		t.Fatalf("wrong secret: %v", got)
	}
	mismatch := url.Values{"client_id": {"client-1"}, "client_secret": {"secret-1"}, "code": {code}, "redirect_uri": {callback}}
	if got := exchange(t, srv, mismatch); got["error"] != "redirect_uri_mismatch" {
		t.Fatalf("other redirect_uri: %v", got)
	}
	tok := exchange(t, srv, good)
	if tok["access_token"] == "" || tok["token_type"] != "bearer" {
		t.Fatalf("exchange: %v", tok)
	}
	if got := exchange(t, srv, good); got["error"] != "bad_verification_code" {
		t.Fatalf("second use of a code: %v", got)
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"user", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var user struct{ Login string }
	_ = json.NewDecoder(resp.Body).Decode(&user)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || user.Login != "Octo-Cat" {
		t.Fatalf("GET /user: HTTP %d %+v", resp.StatusCode, user)
	}
	if r := srv.RequestsTo("GET", "/user"); len(r) != 1 || r[0].Auth != githubtest.AuthUser {
		t.Fatalf("GET /user recorded as %+v", r)
	}
	if status, _ := do(t, "GET", srv.URL+"user", "Bearer gho_unknown"); status != http.StatusUnauthorized {
		t.Fatalf("GET /user with an unknown token: HTTP %d", status)
	}
}

func TestOAuthRefusals(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddOAuthApp("client-1", "secret-1", callback)
	srv.SignIn("octocat")
	cases := []struct {
		name, client, redirect string
		deny                   bool
		status                 int
		wantError              string
	}{
		{"unknown client", "nope", "", false, http.StatusNotFound, ""},
		{"redirect elsewhere", "client-1", "https://evil.example/callback", false, http.StatusFound, "redirect_uri_mismatch"},
		{"user cancels", "client-1", callback, true, http.StatusFound, "access_denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.DenyAuthorization(tc.deny)
			status, loc := authorizeRedirect(t, srv, tc.client, tc.redirect)
			if status != tc.status || loc.Query().Get("error") != tc.wantError {
				t.Fatalf("HTTP %d to %s, want %d with error %q", status, loc, tc.status, tc.wantError)
			}
			if tc.wantError != "" && (!strings.HasPrefix(loc.String(), callback) || loc.Query().Get("code") != "") {
				t.Fatalf("a refusal went to %s", loc)
			}
		})
	}
}

func TestOAuthTokenFormEncoded(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddOAuthApp("client-1", "secret-1", callback)
	srv.SignIn("octocat")
	_, loc := authorizeRedirect(t, srv, "client-1", "")
	resp, err := http.PostForm(srv.WebURL()+"/login/oauth/access_token",
		url.Values{"client_id": {"client-1"}, "client_secret": {"secret-1"}, "code": {loc.Query().Get("code")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v, err := url.ParseQuery(string(body))
	if err != nil || !strings.HasPrefix(v.Get("access_token"), "gho_") {
		t.Fatalf("form answer %q", body)
	}
}
