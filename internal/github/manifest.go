package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	gh "github.com/google/go-github/v66/github"
)

// AppCredentials is what GitHub hands over once, when an App is created
// from its manifest: everything Keystone needs to act as it.
type AppCredentials struct {
	AppID             int64  `json:"app_id"`
	Slug              string `json:"slug"`
	HTMLURL           string `json:"html_url"`
	PrivateKeyPEM     string `json:"pem"`
	WebhookSecret     string `json:"webhook_secret"`
	OAuthClientID     string `json:"client_id"`
	OAuthClientSecret string `json:"client_secret"`
}

// ConversionError is GitHub refusing a manifest code: Status 404 (unknown,
// used or expired code) or 422 (invalid), with GitHub's message.
type ConversionError struct {
	Status  int
	Message string
}

func (e *ConversionError) Error() string {
	return fmt.Sprintf("GitHub answered %d: %s", e.Status, e.Message)
}

// CompleteManifest converts a manifest code into the new App's credentials
// (POST /app-manifests/{code}/conversions, which needs no authentication).
// A code GitHub refuses is a *ConversionError. The error never contains a
// credential.
func CompleteManifest(ctx context.Context, apiURL string, httpClient *http.Client, code string) (AppCredentials, error) {
	base, err := parseAPIURL(apiURL)
	if err != nil {
		return AppCredentials{}, fmt.Errorf("github config: APIURL: %w", err)
	}
	c := gh.NewClient(httpClient)
	c.BaseURL = base
	c.UserAgent = userAgent
	cfg, _, err := c.Apps.CompleteAppManifest(ctx, code)
	if err != nil {
		var er *gh.ErrorResponse
		if errors.As(err, &er) && er.Response != nil {
			return AppCredentials{}, &ConversionError{Status: er.Response.StatusCode, Message: er.Message}
		}
		return AppCredentials{}, fmt.Errorf("convert the manifest code: %w", err)
	}
	creds := AppCredentials{
		AppID: cfg.GetID(), Slug: cfg.GetSlug(), HTMLURL: cfg.GetHTMLURL(), PrivateKeyPEM: cfg.GetPEM(),
		WebhookSecret: cfg.GetWebhookSecret(), OAuthClientID: cfg.GetClientID(), OAuthClientSecret: cfg.GetClientSecret(),
	}
	if creds.AppID <= 0 || creds.PrivateKeyPEM == "" || creds.WebhookSecret == "" {
		return AppCredentials{}, errors.New("convert the manifest code: GitHub's answer lacks the App id, private key or webhook secret")
	}
	return creds, nil
}
