package lookup

// Scoped keys (lookup.scoped_api_keys) let one reid serve a site whose cameras belong to several
// parties: a tenant of a building, a contractor, a police liaison given one entrance. A scoped key
// sees its cameras only, as if the others did not exist: searches, sightings, listings and exports
// are filtered to them in the index query itself (so k results are k of its cameras', not fewer),
// a crop of another camera is "not found" rather than forbidden (its existence is not confirmed),
// and its watches and their alerts are its scope's alone. Scoped keys are never admin keys:
// erasing and labelling span every camera.

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// KeyScope is a set of API keys that see only Cameras. Name identifies it in the audit log and
// owns the watches its keys make. AlertWebhook, when set, receives the alerts of those watches
// (see webhook.go), signed with AlertWebhookSecret when that is set.
type KeyScope struct {
	Name               string
	Cameras            []string
	Keys               []string
	AlertWebhook       string
	AlertWebhookSecret string
}

// cameraScope is a KeyScope as requests are checked against it. A nil *cameraScope is an
// unscoped key's, which sees every camera; its methods all accept nil.
type cameraScope struct {
	name    string
	cameras map[string]bool
	sorted  []string
}

func newCameraScope(scope KeyScope) (*cameraScope, error) {
	if !config.ValidID(scope.Name) {
		return nil, fmt.Errorf("lookup: %q is not a key scope name (letters, digits, '-', '_', '.')", scope.Name)
	}
	if len(scope.Cameras) == 0 {
		return nil, fmt.Errorf("lookup: key scope %s names no cameras", scope.Name)
	}
	built := &cameraScope{name: scope.Name, cameras: map[string]bool{}}
	for _, camera := range scope.Cameras {
		if !config.ValidID(camera) {
			return nil, fmt.Errorf("lookup: key scope %s: %q is not a camera id", scope.Name, camera)
		}
		built.cameras[camera] = true
	}
	built.sorted = slices.Sorted(maps.Keys(built.cameras))
	return built, nil
}

// String is the scope's name, "" for an unscoped key.
func (c *cameraScope) String() string {
	if c == nil {
		return ""
	}
	return c.name
}

func (c *cameraScope) sees(camera string) bool { return c == nil || c.cameras[camera] }

// restrict narrows a search filter to the scope's cameras. Naming a camera outside it is refused
// rather than quietly dropped, so a client never mistakes "not yours" for "not seen there".
func (c *cameraScope) restrict(filter index.Filter) (index.Filter, error) {
	if c == nil {
		return filter, nil
	}
	if len(filter.Cameras) == 0 {
		filter.Cameras = slices.Clone(c.sorted)
		return filter, nil
	}
	for _, camera := range filter.Cameras {
		if !c.cameras[camera] {
			return filter, c.refuse(camera)
		}
	}
	return filter, nil
}

func (c *cameraScope) refuse(camera string) error {
	return errorf(http.StatusForbidden, "this key sees only cameras %s, not %s", strings.Join(c.sorted, ", "), truncateString(camera, 64))
}

// checkCrop answers a crop id outside the scope as the store answers one that does not exist.
func (c *cameraScope) checkCrop(id string) error {
	parsed, err := parseCropID(id)
	if err != nil {
		return err
	}
	if !c.sees(parsed.Camera) {
		return cropError(id, cropstore.ErrNotFound)
	}
	return nil
}

// seesWatch says whether a watch is the scope's own; an unscoped key sees every watch.
func (c *cameraScope) seesWatch(watch Watch) bool { return c == nil || watch.Scope == c.name }

// seesAlert says whether an alert is of the scope's own watch and of one of its cameras (a watch
// made before the scope lost a camera may still alert on it).
func (c *cameraScope) seesAlert(watch Watch, alert *Alert) bool {
	return c.seesWatch(watch) && c.sees(alert.Camera)
}

// scopeSearch checks a search's query crop (if any) and narrows its filter to the scope.
func scopeSearch(scope *cameraScope, cropID string, filter *index.Filter) error {
	if cropID != "" {
		if err := scope.checkCrop(cropID); err != nil {
			return err
		}
	}
	restricted, err := scope.restrict(*filter)
	if err != nil {
		return err
	}
	*filter = restricted
	return nil
}

// WhoAmIResponse is the body of GET /v1/whoami: what the presented key may see and do, so that a
// client (the page) can say so rather than learn it from refusals.
type WhoAmIResponse struct {
	// Key is the key's id as the audit log writes it ("anonymous" without keys).
	Key string `json:"key"`
	// Admin says whether it may erase and label (an admin key, or, without keys, this machine).
	Admin bool `json:"admin"`
	// Scope and Cameras are a scoped key's scope and the cameras it sees; both are absent for a
	// key that sees every camera.
	Scope   string   `json:"scope,omitempty"`
	Cameras []string `json:"cameras,omitempty"`
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request, call *call) error {
	response := WhoAmIResponse{Key: call.key, Admin: s.mayAdminister(r, call, "administer") == nil, Scope: call.scope.String()}
	if call.scope != nil {
		response.Cameras = slices.Clone(call.scope.sorted)
	}
	call.results = 1
	writeJSON(w, http.StatusOK, response)
	return nil
}
