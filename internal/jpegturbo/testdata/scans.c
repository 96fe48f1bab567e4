// scans.c writes the progressive test JPEGs: a 16x16 image whose scan script refines every DCT
// coefficient of every component bit by bit, the most scans a valid progressive JPEG can have
// for a given depth. Build: cc scans.c -ljpeg -o scans
//   ./scans 1 scans-380.jpg   (380 scans: under jpegturbo.MaxScans)
//   ./scans 3 scans-760.jpg   (760 scans: over it)
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: scans REFINEMENTS OUT.jpg\n");
		return 2;
	}
	int refinements = atoi(argv[1]), size = 16, count = 0;
	struct jpeg_compress_struct info;
	struct jpeg_error_mgr errors;
	info.err = jpeg_std_error(&errors);
	jpeg_create_compress(&info);
	FILE *out = fopen(argv[2], "wb");
	if (out == NULL) {
		perror(argv[2]);
		return 1;
	}
	jpeg_stdio_dest(&info, out);
	info.image_width = size;
	info.image_height = size;
	info.input_components = 3;
	info.in_color_space = JCS_RGB;
	jpeg_set_defaults(&info);
	jpeg_scan_info *scans = calloc(1 + refinements + 3 * 63 * (1 + refinements), sizeof *scans);
	// DC of all components, then each refinement bit of it.
	scans[count].comps_in_scan = 3;
	for (int c = 0; c < 3; c++) scans[count].component_index[c] = c;
	scans[count++].Al = refinements;
	for (int bit = refinements; bit > 0; bit--, count++) {
		scans[count] = scans[0];
		scans[count].Ah = bit;
		scans[count].Al = bit - 1;
	}
	// Each AC coefficient of each component on its own, then each refinement bit of it.
	for (int c = 0; c < 3; c++) {
		for (int k = 1; k < 64; k++) {
			jpeg_scan_info first = {.comps_in_scan = 1, .component_index = {c}, .Ss = k, .Se = k, .Al = refinements};
			scans[count++] = first;
			for (int bit = refinements; bit > 0; bit--, count++) {
				scans[count] = first;
				scans[count].Ah = bit;
				scans[count].Al = bit - 1;
			}
		}
	}
	info.scan_info = scans;
	info.num_scans = count;
	jpeg_start_compress(&info, TRUE);
	unsigned char row[16 * 3];
	while (info.next_scanline < info.image_height) {
		int y = info.next_scanline;
		for (int x = 0; x < size; x++) {
			row[3 * x] = (x * 16 + y) & 255;
			row[3 * x + 1] = (x ^ y) * 16 & 255;
			row[3 * x + 2] = x * y & 255;
		}
		JSAMPROW rows[1] = {row};
		jpeg_write_scanlines(&info, rows, 1);
	}
	jpeg_finish_compress(&info);
	fclose(out);
	fprintf(stderr, "%s: %d scans\n", argv[2], count);
	return 0;
}
