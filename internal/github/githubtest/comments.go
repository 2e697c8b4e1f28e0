package githubtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxCommentBody is GitHub's limit on a comment body, in characters.
const maxCommentBody = 65536

// reactionContents are the reactions GitHub knows.
var reactionContents = []string{"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}

// Comment is an issue or pull-request comment as the fake stored it.
type Comment struct {
	ID        int64
	Issue     int
	User      string // "<slug>[bot]" for the App's own comments
	Body      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Reaction is a reaction to an issue comment.
type Reaction struct {
	ID        int64
	CommentID int64
	User      string
	Content   string
}

// AddComment stores a comment by user (a known user from then on) on issue
// or pull request number of repository fullName, as if posted on GitHub,
// and returns it: the comment a webhook test then delivers.
func (s *Server) AddComment(fullName string, number int, user, body string) Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knowUser(user)
	return s.addComment(s.lookupRepo(fullName), number, user, body)
}

// addComment stores a comment. Callers hold s.mu.
func (s *Server) addComment(rp *repo, number int, user, body string) Comment {
	now := time.Now().UTC()
	c := &Comment{ID: s.newID(), Issue: number, User: user, Body: body, CreatedAt: now, UpdatedAt: now}
	rp.comments = append(rp.comments, c)
	return *c
}

// Comments returns the comments on issue or pull request number of
// repository fullName, oldest first.
func (s *Server) Comments(fullName string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.lookupRepo(fullName).comments {
		if c.Issue == number {
			out = append(out, *c)
		}
	}
	return out
}

// Reactions returns the reactions to comment commentID of repository
// fullName, oldest first.
func (s *Server) Reactions(fullName string, commentID int64) []Reaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Reaction
	for _, re := range s.lookupRepo(fullName).reactions {
		if re.CommentID == commentID {
			out = append(out, re)
		}
	}
	return out
}

// commentJSON renders a comment. Callers hold s.mu.
func (s *Server) commentJSON(rp *repo, c *Comment) map[string]any {
	m := map[string]any{
		"id": c.ID, "node_id": fmt.Sprintf("IC_%d", c.ID), "body": c.Body, "user": s.userJSON(c.User),
		"url":        fmt.Sprintf("%srepos/%s/issues/comments/%d", s.URL, rp.fullName, c.ID),
		"html_url":   fmt.Sprintf("https://github.com/%s/issues/%d#issuecomment-%d", rp.fullName, c.Issue, c.ID),
		"issue_url":  fmt.Sprintf("%srepos/%s/issues/%d", s.URL, rp.fullName, c.Issue),
		"created_at": timestamp(c.CreatedAt), "updated_at": timestamp(c.UpdatedAt),
		"author_association": "NONE", "performed_via_github_app": nil,
	}
	if c.User == s.botLogin() {
		m["performed_via_github_app"] = s.appJSON()
	}
	return m
}

// commentBody reads and validates {"body": ...} like GitHub: present, not
// blank, at most 65536 characters. It answers the error itself.
func commentBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	var in struct {
		Body *string `json:"body"`
	}
	if !decodeBody(w, r, &in) {
		return "", false
	}
	switch {
	case in.Body == nil || strings.TrimSpace(*in.Body) == "":
		writeValidation(w, fieldError{Resource: "IssueComment", Field: "body", Code: "missing_field"})
		return "", false
	case utf8.RuneCountInString(*in.Body) > maxCommentBody:
		writeValidation(w, fieldError{Resource: "IssueComment", Field: "body", Code: "custom",
			Message: fmt.Sprintf("body is too long (maximum is %d characters)", maxCommentBody)})
		return "", false
	}
	return *in.Body, true
}

// issueNumber parses the path's {number}; GitHub answers 404 to a bad one.
func issueNumber(r *http.Request) (int, bool) {
	n, err := strconv.Atoi(r.PathValue("number"))
	return n, err == nil && n > 0
}

// findComment returns the comment named by the path's {id} if it belongs
// to rp. Callers hold s.mu.
func findComment(r *http.Request, rp *repo) *Comment {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	i := slices.IndexFunc(rp.comments, func(c *Comment) bool { return c.ID == id })
	if i < 0 {
		return nil
	}
	return rp.comments[i]
}

func (s *Server) createComment(w http.ResponseWriter, r *http.Request, rp *repo) {
	n, ok := issueNumber(r)
	if !ok {
		notFound(w, r)
		return
	}
	body, ok := commentBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.addComment(rp, n, s.botLogin(), body)
	writeJSON(w, http.StatusCreated, s.commentJSON(rp, &c))
}

func (s *Server) editComment(w http.ResponseWriter, r *http.Request, rp *repo) {
	body, ok := commentBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := findComment(r, rp)
	if c == nil {
		notFound(w, r)
		return
	}
	c.Body, c.UpdatedAt = body, time.Now().UTC()
	writeJSON(w, http.StatusOK, s.commentJSON(rp, c))
}

// listComments lists an issue's comments oldest first, paginated with
// per_page and page and a Link header.
func (s *Server) listComments(w http.ResponseWriter, r *http.Request, rp *repo) {
	n, ok := issueNumber(r)
	if !ok {
		notFound(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*Comment
	for _, c := range rp.comments {
		if c.Issue == n {
			all = append(all, c)
		}
	}
	lo, hi := s.paginate(w, r, len(all))
	out := make([]map[string]any, 0, hi-lo)
	for _, c := range all[lo:hi] {
		out = append(out, s.commentJSON(rp, c))
	}
	writeJSON(w, http.StatusOK, out)
}

// createReaction adds the App's reaction to a comment: 201 when new, 200
// with the existing one when the App already reacted so; 422 for a content
// GitHub does not know.
func (s *Server) createReaction(w http.ResponseWriter, r *http.Request, rp *repo) {
	var in struct {
		Content string `json:"content"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if !slices.Contains(reactionContents, in.Content) {
		writeValidation(w, fieldError{Resource: "Reaction", Field: "content", Code: "custom",
			Message: "content is not included in the list"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := findComment(r, rp)
	if c == nil {
		notFound(w, r)
		return
	}
	bot := s.botLogin()
	status := http.StatusOK
	i := slices.IndexFunc(rp.reactions, func(re Reaction) bool {
		return re.CommentID == c.ID && re.User == bot && re.Content == in.Content
	})
	if i < 0 {
		rp.reactions = append(rp.reactions, Reaction{ID: s.newID(), CommentID: c.ID, User: bot, Content: in.Content})
		i, status = len(rp.reactions)-1, http.StatusCreated
	}
	re := rp.reactions[i]
	writeJSON(w, status, map[string]any{
		"id": re.ID, "node_id": fmt.Sprintf("REA_%d", re.ID), "user": s.userJSON(re.User),
		"content": re.Content, "created_at": timestamp(time.Now()),
	})
}
