package web

// View models: one per page, holding everything its template shows, already
// formatted. Templates only lay them out.

// Chrome is what every page's layout needs.
type Chrome struct {
	Title string
	// User is nil on the sign-in page.
	User *UserView
	// CSRF is the token every form of the page carries.
	CSRF string
	// Nav names the current section: apps or audit.
	Nav string
}

// UserView is the signed-in user.
type UserView struct {
	Name      string
	Role      string
	CanDeploy bool
	IsAdmin   bool
}

// Time is an instant shown relative ("3 minutes ago") and absolute.
type Time struct {
	ISO  string // RFC 3339, for <time datetime>
	Abs  string // "2025-01-02 15:04:05 UTC"
	Rel  string
	Href string // where the time links to; "" for none
}

// Commit is a SHA shortened and linked to GitHub.
type Commit struct {
	Short, Full, URL string
}

// Badge is a state with its colour class.
type Badge struct {
	Text  string
	Class string // ok, bad, run, muted, warn
}

// LogLine is one log line split into runs of text with an optional fixed
// class (ANSI colours); the text is escaped by the template.
type LogLine struct {
	Seq  int
	Segs []Segment
}

// Segment is a run of text of one style.
type Segment struct {
	Text  string `json:"t"`
	Class string `json:"c,omitempty"`
}

// LoginPage is /login.
type LoginPage struct {
	Chrome
	Next      string
	Name      string
	Error     string
	Notice    string
	GitHub    bool // offer "Sign in with GitHub"
	GitHubURL string
}

// AppsPage is / : every app.
type AppsPage struct {
	Chrome
	Apps []AppRow
}

// AppRow is one app of the overview.
type AppRow struct {
	App        Link // to the app page
	Repository Link // to GitHub
	Branch     string
	Serving    *Commit
	State      Badge // of the newest deployment
	Locked     bool
	URL        *Link // where the app is served; nil when not serving
	Health     string
	LastDeploy *Time // links to the newest deployment
}

// AppPage is /apps/{owner}/{repo}/{app}.
type AppPage struct {
	Chrome
	Owner, Repo, Name string
	Path              string
	RepoURL           string
	Branch            string
	URL               string
	Removed           bool
	Serving           *DeploymentRow
	Lock              *LockView
	Container         ContainerView
	// Certificate is the HTTPS state of the app's host; nil when apps are
	// not served over HTTPS by the router.
	Certificate *CertificateView
	History     []DeploymentRow
	OlderPath   string // next page of history; "" when none
	NewestPath  string // back to the first page; "" on it
	// Redeploy and Rollback are set for deployers when the action is
	// available.
	Redeploy *ActionForm
	Rollback *RollbackForm
	// ActionsUnavailable says why deployers see no buttons ("" if they do).
	ActionsUnavailable string
	// InFlight is the app's queued or running deployment; nil when none.
	InFlight *InFlightView
	Secrets  *SecretsView
	Error    string // a refused action, shown at the top
	Notice   string // a done action
}

// LockView is a locked app's lock.
type LockView struct {
	By, Reason string
	At         *Time
}

// CertificateView is the app page's HTTPS line: the certificate of Host,
// issued (Issuer, Expires) or not yet, and the last error getting one.
type CertificateView struct {
	Host    string
	Issuer  string
	Expires *Time
	// Soon: it expires within certificateRenewalWindow and was not renewed.
	Soon    bool
	Error   string
	ErrorAt *Time
	Problem string // why the state cannot be shown
}

// ContainerView is the app's container as Docker reports it.
type ContainerView struct {
	Available bool
	Problem   string // why it is not available
	State     Badge
	Image     string
	StartedAt *Time
	Output    []LogLine
	// Foreign lists containers with the app's labels that Keystone did
	// not create.
	Foreign []string
}

// DeploymentRow is one deployment in a list.
type DeploymentRow struct {
	ID          int64
	Path        string
	Number      Link // "#12" to its page
	Kind        string
	Commit      Commit
	Actor       string
	Trigger     string
	State       Badge
	Description string
	Health      string
	// Switch says what the router's switch drained and failed ("" if none).
	Switch   string
	Duration string
	Queued   Time
}

// ActionForm is a button posting to Action.
type ActionForm struct {
	Action string
	Label  string
	// Disabled says why the button cannot be pressed now ("" when it can).
	Disabled string
}

// InFlightView is the deployment of an app that is queued or running: the
// page says which and at what step, and follows it (data-events) to
// re-enable the controls it disabled once it ends.
type InFlightView struct {
	ID         int64
	Path       string
	EventsPath string
	Kind       string
	Running    bool
	Step       string
}

// RollbackForm picks the deployment to go back to.
type RollbackForm struct {
	Action  string
	Targets []RollbackTarget
}

// RollbackTarget is one choice of the rollback select.
type RollbackTarget struct {
	ID       int64
	Label    string
	Selected bool
}

// SecretsView lists an app's secret names for admins, with set and unset
// forms. Values are never shown.
type SecretsView struct {
	Names []string
	// PreviewNames are the secrets only the app's pull-request previews
	// get (SPEC §14).
	PreviewNames []string
	SetAction    string
	UnsetAction  string
	Problem      string
}

// DeploymentPage is /deployments/{id}.
type DeploymentPage struct {
	Chrome
	Deployment   DeploymentRow
	AppName      string
	AppPath      string
	Ref          string
	Target       *DeploymentRow // what a rollback or redeploy went back to
	Steps        []StepRow
	Started      *Time
	Finished     *Time
	Log          []LogLine
	LogTruncated bool
	LogCut       bool // more lines than the page shows: see the plain log
	PlainLogPath string
	// EventsPath is set while the deployment runs: the script follows it.
	EventsPath string
}

// StepRow is one step of a deployment.
type StepRow struct {
	Name     string
	Started  Time
	Duration string
	State    Badge
	Error    string
}

// AuditPage is /audit.
type AuditPage struct {
	Chrome
	Events     []AuditRow
	OlderPath  string
	NewestPath string
}

// AuditRow is one audit event.
type AuditRow struct {
	ID      int64
	At      Time
	Actor   string
	Action  string
	Target  string
	Details []KeyValue
}

// KeyValue is one detail of an audit event.
type KeyValue struct{ Key, Value string }

// UsersPage is /users: who may sign in (admins only).
type UsersPage struct {
	Chrome
	Users []UserRow
}

// UserRow is one user. Password hashes are never shown, only whether the
// user has a password.
type UserRow struct {
	Name, Role, GitHubLogin string
	Password                bool
	Added                   Time
}

// ErrorPage is any refusal or failure.
type ErrorPage struct {
	Chrome
	Status  int
	Heading string
	Message string
}

// Each view names its template.

func (*LoginPage) template() string      { return "login.html" }
func (*AppsPage) template() string       { return "apps.html" }
func (*AppPage) template() string        { return "app.html" }
func (*DeploymentPage) template() string { return "deployment.html" }
func (*AuditPage) template() string      { return "audit.html" }
func (*UsersPage) template() string      { return "users.html" }
func (*ErrorPage) template() string      { return "error.html" }

// view is a page's view model.
type view interface {
	template() string
	chrome() *Chrome
}

func (c *Chrome) chrome() *Chrome { return c }
