// Package jpegturbo decodes JPEGs with libjpeg-turbo, straight into an *image.RGBA.
//
// Every crop the embedder, the trainer and the lookup API feed to the network is a JPEG, and on
// a few cores decoding it with image/jpeg (0.33 ms for a 128x256 crop here, plus 0.07 ms turning
// its YCbCr into RGB) cost a tenth of the model's own time. libjpeg-turbo's SIMD decoder takes
// 0.09 ms and produces RGB itself. Its output is also what OpenCV's imdecode and PIL produce
// (accurate integer IDCT, smooth chroma upsampling), the pixels re-id networks are trained on;
// image/jpeg repeats each chroma sample instead.
//
// libjpeg's own error handling exits the process; here every error and every warning (corrupt
// data, a premature end) becomes a returned error, so a damaged crop is rejected, never half-read.
package jpegturbo

/*
#cgo pkg-config: libjpeg
#include <stdio.h>
#include <setjmp.h>
#include <string.h>
#include <jpeglib.h>

typedef struct {
	struct jpeg_error_mgr manager;
	jmp_buf escape;
	char message[JMSG_LENGTH_MAX];
} reid_jpeg_error;

static void reid_jpeg_fail(j_common_ptr info) {
	reid_jpeg_error *err = (reid_jpeg_error *)info->err;
	(*info->err->format_message)(info, err->message);
	longjmp(err->escape, 1);
}

// Warnings (level -1) mean damaged data that libjpeg would paper over; treat them as errors.
static void reid_jpeg_message(j_common_ptr info, int level) {
	if (level < 0) {
		reid_jpeg_fail(info);
	}
}

enum { REID_JPEG_OK = 0, REID_JPEG_ERROR = 1, REID_JPEG_UNSUPPORTED = 2 };

// A valid progressive JPEG may hold a couple of thousand scans, each a pass over every block of
// the image: a 16-megapixel upload made that way takes ten times as long to decode as a plain
// one. Encoders write about 10; libjpeg-turbo's documentation recommends refusing more than 500.
enum { REID_JPEG_MAX_SCANS = 500 };

static void reid_jpeg_count_scans(j_common_ptr info) {
	int scans = ((j_decompress_ptr)info)->input_scan_number;
	if (scans > REID_JPEG_MAX_SCANS) {
		reid_jpeg_error *err = (reid_jpeg_error *)info->err;
		snprintf(err->message, sizeof err->message, "more than %d progressive scans", REID_JPEG_MAX_SCANS);
		longjmp(err->escape, 1);
	}
}

// reid_jpeg_decode decodes data into out (width*height*4 bytes, RGBA with opaque alpha). It
// fails unless the image is exactly width x height. UNSUPPORTED means a colour space libjpeg
// cannot turn into RGB (CMYK, YCCK): the caller decodes it some other way.
static int reid_jpeg_decode(const unsigned char *data, unsigned long size, unsigned char *out,
                            int width, int height, char *message, size_t message_size) {
	struct jpeg_decompress_struct info;
	reid_jpeg_error err;
	struct jpeg_progress_mgr progress;
	int status = REID_JPEG_OK;
	memset(&info, 0, sizeof info);
	info.err = jpeg_std_error(&err.manager);
	err.manager.error_exit = reid_jpeg_fail;
	err.manager.emit_message = reid_jpeg_message;
	err.message[0] = 0;
	if (setjmp(err.escape)) {
		snprintf(message, message_size, "%s", err.message);
		jpeg_destroy_decompress(&info);
		return REID_JPEG_ERROR;
	}
	jpeg_create_decompress(&info);
	memset(&progress, 0, sizeof progress);
	progress.progress_monitor = reid_jpeg_count_scans;
	info.progress = &progress;
	jpeg_mem_src(&info, data, size);
	jpeg_read_header(&info, TRUE);
	if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
		status = REID_JPEG_UNSUPPORTED;
	} else if ((int)info.image_width != width || (int)info.image_height != height) {
		snprintf(message, message_size, "header says %ux%u, expected %dx%d", info.image_width, info.image_height, width, height);
		status = REID_JPEG_ERROR;
	}
	if (status != REID_JPEG_OK) {
		jpeg_destroy_decompress(&info);
		return status;
	}
	info.out_color_space = JCS_EXT_RGBA;
	jpeg_start_decompress(&info);
	while (info.output_scanline < info.output_height) {
		JSAMPROW row = out + (size_t)info.output_scanline * (size_t)width * 4;
		jpeg_read_scanlines(&info, &row, 1);
	}
	jpeg_finish_decompress(&info);
	jpeg_destroy_decompress(&info);
	return REID_JPEG_OK;
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"unsafe"
)

// MaxPixels bounds the images Decode accepts, so a forged header cannot make it allocate
// gigabytes: 64 megapixels, far above any camera frame.
const MaxPixels = 1 << 26

// MaxScans bounds the scans of a progressive JPEG (see reid_jpeg_count_scans).
const MaxScans = C.REID_JPEG_MAX_SCANS

// ErrTooLarge is returned for images over MaxPixels.
var ErrTooLarge = errors.New("jpegturbo: image too large")

// Decode decodes a JPEG into an RGBA image with opaque alpha. CMYK and YCCK JPEGs, which
// libjpeg cannot convert to RGB, are decoded by image/jpeg instead.
func Decode(data []byte) (*image.RGBA, error) {
	config, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("jpegturbo: %w", err)
	}
	if config.Width <= 0 || config.Height <= 0 {
		return nil, fmt.Errorf("jpegturbo: empty image %dx%d", config.Width, config.Height)
	}
	if config.Width*config.Height > MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d", ErrTooLarge, config.Width, config.Height)
	}
	picture := image.NewRGBA(image.Rect(0, 0, config.Width, config.Height))
	var message [C.JMSG_LENGTH_MAX]C.char
	status := C.reid_jpeg_decode((*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)),
		(*C.uchar)(unsafe.Pointer(&picture.Pix[0])), C.int(config.Width), C.int(config.Height),
		&message[0], C.size_t(len(message)))
	switch status {
	case C.REID_JPEG_OK:
		return picture, nil
	case C.REID_JPEG_UNSUPPORTED:
		return decodeOther(data)
	default:
		return nil, fmt.Errorf("jpegturbo: %s", C.GoString(&message[0]))
	}
}

// decodeOther decodes with image/jpeg and converts to RGBA.
func decodeOther(data []byte) (*image.RGBA, error) {
	decoded, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("jpegturbo: %w", err)
	}
	bounds := decoded.Bounds()
	picture := image.NewRGBA(image.Rect(0, 0, bounds.Dx(), bounds.Dy()))
	for y := range bounds.Dy() {
		for x := range bounds.Dx() {
			picture.Set(x, y, decoded.At(bounds.Min.X+x, bounds.Min.Y+y))
		}
	}
	return picture, nil
}
