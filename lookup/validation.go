package lookup

// The validation routes let the people who search also label: POST /v1/validation/people adds
// one person, seen in the sightings someone picked from a search's results, to the site's
// validation set (eval.LabelledSet), on which reid train --validate decides whether an adapted
// model may be promoted. GET /v1/validation says what the set holds.

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
)

// Labelling bounds: a person is a handful of sightings, each bringing a few crops of its track.
const (
	maxLabelSightings  = 20
	maxLabelNote       = 200
	labelCropsPerTrack = 4
)

// LabelRequest is the body of POST /v1/validation/people: one crop of each sighting of the person.
type LabelRequest struct {
	CropIDs []string `json:"crop_ids"`
	Note    string   `json:"note"`
}

// LabelResponse describes the person added.
type LabelResponse struct {
	PID     int      `json:"pid"`
	Crops   int      `json:"crops"`
	Cameras []string `json:"cameras"`
	Set     string   `json:"set"`
}

// ValidationResponse is the body of GET /v1/validation.
type ValidationResponse struct {
	People  int      `json:"people"`
	Cameras []string `json:"cameras"`
	Summary string   `json:"summary"`
}

func (s *Server) validationSet() (*eval.LabelledSet, error) {
	if s.config.ValidationDir == "" {
		return nil, errorf(http.StatusNotFound, "this server has no validation set (trainer.validation_dir)")
	}
	return eval.OpenLabelledSet(s.config.ValidationDir)
}

func (s *Server) handleValidation(w http.ResponseWriter, r *http.Request, call *call) error {
	if err := s.mayAdminister(r, call, "label"); err != nil {
		return err
	}
	set, err := s.validationSet()
	if err != nil {
		return err
	}
	call.results = len(set.People)
	writeJSON(w, http.StatusOK, ValidationResponse{People: len(set.People), Cameras: append([]string{}, set.Cameras...), Summary: set.Summary()})
	return nil
}

func (s *Server) handleLabelPerson(w http.ResponseWriter, r *http.Request, call *call) error {
	if err := s.mayAdminister(r, call, "label"); err != nil {
		return err
	}
	var request LabelRequest
	if err := readStrictJSON(w, r, &request, `{"crop_ids": [one crop of each sighting], "note": ...}`); err != nil {
		return err
	}
	request.Note = strings.TrimSpace(request.Note)
	switch {
	case len(request.CropIDs) < 2 || len(request.CropIDs) > maxLabelSightings:
		return errorf(http.StatusBadRequest, "name 2 to %d crops, one of each sighting of the person (have %d)", maxLabelSightings, len(request.CropIDs))
	case len(request.Note) > maxLabelNote:
		return errorf(http.StatusBadRequest, "note is longer than %d bytes", maxLabelNote)
	}
	for _, id := range request.CropIDs {
		if _, err := cropstore.ParseID(id); err != nil {
			return errorf(http.StatusBadRequest, "crop_ids: %v", err)
		}
	}
	call.params = map[string]any{"crop_ids": request.CropIDs, "note": request.Note}
	set, err := s.validationSet()
	if err != nil {
		return err
	}
	// An erasure and an addition must not cross: the one could copy a crop the other deletes.
	s.erasing.Lock()
	defer s.erasing.Unlock()
	crops, err := eval.CropsOfSightings(r.Context(), s.config.Store, request.CropIDs, labelCropsPerTrack)
	if errors.Is(err, cropstore.ErrNotFound) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	person, err := set.AddPerson(crops, request.Note+" (key "+call.key+")")
	switch {
	case errors.Is(err, eval.ErrLabelled):
		return errorf(http.StatusConflict, "%v", err)
	case errors.Is(err, eval.ErrOneCamera):
		return errorf(http.StatusBadRequest, "%v", err)
	case err != nil:
		return err
	}
	response := LabelResponse{PID: person.PID, Crops: len(crops), Set: set.Summary()}
	for camera := range person.Crops {
		response.Cameras = append(response.Cameras, camera)
	}
	slices.Sort(response.Cameras)
	call.results = len(crops)
	writeJSON(w, http.StatusCreated, response)
	return nil
}
