package lookup

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handleExport answers POST /v1/export: the search POST /v1/search would run, as a ZIP an
// investigator can file with a case: the query image, every match's crop, the results as CSV and
// JSON, and a note of who searched for what, when, with which model. The export is audited like
// the search (its parameters, and the key that made it).
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request, call *call) error {
	response, request, err := s.searchRequest(w, r, call)
	if err != nil {
		return err
	}
	call.params["export"] = true
	queryImage := request.Image
	if request.CropID != "" {
		if queryImage, err = s.config.Store.Image(r.Context(), request.CropID); err != nil {
			return cropError(request.CropID, err)
		}
	}
	now := s.now().UTC()
	var archive bytes.Buffer
	zipWriter := zip.NewWriter(&archive)
	add := func(name string, data []byte) error {
		header := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: now}
		if strings.HasSuffix(name, ".jpg") || strings.HasSuffix(name, ".png") {
			header.Method = zip.Store // already compressed
		}
		file, err := zipWriter.CreateHeader(header)
		if err == nil {
			_, err = file.Write(data)
		}
		return err
	}
	queryName := "query.jpg"
	if strings.HasPrefix(string(queryImage), string(pngMagic)) {
		queryName = "query.png"
	}
	if err := add(queryName, queryImage); err != nil {
		return err
	}
	var table bytes.Buffer
	rows := csv.NewWriter(&table)
	rows.Write([]string{"rank", "crop_id", "camera", "time", "track", "frame", "score", "track_score", "rank_score", "file"})
	for i, match := range response.Matches {
		image, err := s.config.Store.Image(r.Context(), match.CropID)
		file := ""
		if err == nil {
			file = fmt.Sprintf("crops/%03d_%s.jpg", i+1, match.CropID)
			if err := add(file, image); err != nil {
				return err
			}
		}
		rows.Write([]string{strconv.Itoa(i + 1), match.CropID, match.Camera, match.Time.Format(time.RFC3339Nano),
			strconv.FormatInt(match.Track, 10), strconv.FormatInt(match.Frame, 10), formatScore(&match.Score),
			formatScore(match.TrackScore), formatScore(match.RankScore), file})
	}
	rows.Flush()
	if err := add("results.csv", table.Bytes()); err != nil {
		return err
	}
	encoded, err := json.MarshalIndent(response, "", "  ")
	if err != nil {
		return err
	}
	if err := add("results.json", encoded); err != nil {
		return err
	}
	params, _ := json.Marshal(call.params)
	note := fmt.Sprintf("reid person search export\n\nexported: %s\nby: %s\nmodel: %s\nquery: %s\nparameters: %s\nmatches: %d (crops/, results.csv, results.json; a missing file in results.csv is a crop already deleted)\n",
		now.Format(time.RFC3339), call.key, response.Query.Model, queryName, params, len(response.Matches))
	if request.CropID != "" {
		note += "query crop: " + request.CropID + "\n"
	}
	if call.scope != nil {
		// Whoever reads the export later must know it is not the whole site's answer.
		note += fmt.Sprintf("scope: %s, whose key sees only cameras %s: sightings on other cameras are not searched\n",
			call.scope.name, strings.Join(call.scope.sorted, ", "))
	}
	if err := add("README.txt", []byte(note)); err != nil {
		return err
	}
	if err := zipWriter.Close(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="reid-export-`+now.Format("20060102T150405Z")+`.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(archive.Bytes())
	return nil
}

func formatScore(score *float32) string {
	if score == nil {
		return ""
	}
	return strconv.FormatFloat(float64(*score), 'f', 6, 32)
}
