package web

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// Role is what a user may do on the station (docs/security.md).
type Role int

// The roles, each allowed what the one before it may do and more.
const (
	// RoleNone is no role: the request is not logged in.
	RoleNone Role = iota
	// RoleViewer reads the status page, the API, results and metrics.
	RoleViewer
	// RoleOperator also labels results, triggers, pauses and resumes,
	// selects the product and clears faults.
	RoleOperator
	// RoleAdmin also changes thresholds and installs or activates
	// models: every other state-changing request.
	RoleAdmin
)

// String returns the role's name as written in the users file.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole returns the role named s: "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q is not one of \"viewer\", \"operator\", \"admin\"", s)
}

// LocalUser is the user of every request when no users file is
// configured (the loopback-only default): it may do everything.
const LocalUser = "local"

// bcryptCost is the cost of the hashes `inspectd passwd` writes.
const bcryptCost = 12

// maxUsersFile bounds the users file read.
const maxUsersFile = 1 << 20

// User is one line of the users file.
type User struct {
	Name string
	Role Role
	hash []byte
}

// Users are the users of the station, by name.
type Users map[string]User

// CheckUserName reports whether name may name a user: 1 to 64 of
// A-Z a-z 0-9 _ . @ -.
func CheckUserName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("user name %q must be 1 to 64 characters", name)
	}
	for _, c := range name {
		if c > unicode.MaxASCII || !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("_.@-", c)) {
			return fmt.Errorf("user name %q has the character %q; use A-Z a-z 0-9 _ . @ -", name, c)
		}
	}
	return nil
}

// LoadUsers reads the users file at path: lines "name:role:bcrypt-hash",
// blank lines and lines starting with # ignored. An error names the file
// and line and says what was expected. warnings are problems that do not
// stop the daemon (a file other users can read).
func LoadUsers(path string) (users Users, warnings []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("users file %s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("users file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o004 != 0 {
		warnings = append(warnings, fmt.Sprintf("users file %s has mode %04o: every user of this machine can read the password hashes; chmod 0640 (owner root or the inspectd user, group inspectd)", path, st.Mode().Perm()))
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, f, maxUsersFile)); err != nil {
		return nil, nil, fmt.Errorf("users file %s: %w", path, err)
	}
	users, err = ParseUsers(path, buf.Bytes())
	return users, warnings, err
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseUsers parses the text of a users file; name is the file's name
// for the errors, which name the line. Every line is checked; the error
// lists every problem.
func ParseUsers(name string, data []byte) (Users, error) {
	users := Users{}
	lines := map[string]int{}
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxUsersFile)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			bad("want name:role:bcrypt-hash (print a line with `inspectd passwd --user NAME --role ROLE`)")
			continue
		}
		uname, rname, hash := parts[0], parts[1], parts[2]
		if err := CheckUserName(uname); err != nil {
			bad("%v", err)
			continue
		}
		role, err := ParseRole(rname)
		if err != nil {
			bad("user %q: %v", uname, err)
			continue
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			bad("user %q: the password hash is not a bcrypt hash ($2a$/$2b$/$2y$…, 60 characters): %v; passwords are never stored in clear, print a line with `inspectd passwd`", uname, err)
			continue
		}
		if first, dup := lines[uname]; dup {
			bad("user %q is already defined on line %d", uname, first)
			continue
		}
		lines[uname] = n
		users[uname] = User{Name: uname, Role: role, hash: []byte(hash)}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("%s:%d: %v", name, n+1, err))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no users; add a line with `inspectd passwd --user NAME --role admin >> %s`", name, name)
	}
	return users, nil
}

// HashPassword returns the users-file line for name with role and
// password (bcrypt, cost 12), for `inspectd passwd`.
func HashPassword(name string, role Role, password []byte) (string, error) {
	if err := CheckUserName(name); err != nil {
		return "", err
	}
	if role == RoleNone {
		return "", errors.New("no role")
	}
	if len(password) < 8 {
		return "", errors.New("the password must have at least 8 characters")
	}
	if len(password) > 72 {
		return "", errors.New("the password must have at most 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword(password, bcryptCost)
	if err != nil {
		return "", err
	}
	return name + ":" + role.String() + ":" + string(h), nil
}

// dummyHash is compared against for unknown users, so that a login for
// an unknown name takes as long as one for a known name.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("inspectd-no-such-user"), bcryptCost)
	return h
})

// check returns the user name/password denote, or false.
func (u Users) check(name string, password []byte) (User, bool) {
	usr, ok := u[name]
	var h []byte
	if ok {
		h = usr.hash
	} else {
		h = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(h, password) != nil || !ok {
		return User{}, false
	}
	return usr, true
}

// principal is the user of a request, in its context.
type principal struct {
	name string
	role Role
	sess *session // nil when authentication is off
}

type principalKey struct{}

// UserFrom returns the user of the request whose context ctx is, and the
// role's name ("viewer", "operator", "admin"): "local" and "admin" when
// the station has no users file; "" and "" on a path that needs no login
// (http.open_paths, /login) or outside the server.
func UserFrom(ctx context.Context) (name, role string) {
	p, ok := ctx.Value(principalKey{}).(*principal)
	if !ok || p == nil {
		return "", ""
	}
	return p.name, p.role.String()
}

// CSRFToken returns the CSRF token of the request's session, for the
// hidden csrf_token field of a page's forms (or the X-CSRF-Token header
// of its script); "" when authentication is off or there is no session.
func CSRFToken(r *http.Request) string {
	p, ok := r.Context().Value(principalKey{}).(*principal)
	if !ok || p == nil || p.sess == nil {
		return ""
	}
	return p.sess.csrf
}

// withPrincipal returns r carrying p.
func withPrincipal(r *http.Request, p *principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// logWarnings logs the users file's warnings.
func logWarnings(log *slog.Logger, ws []string) {
	for _, w := range ws {
		log.Warn(w)
	}
}
