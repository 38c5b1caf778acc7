/* Decode one rectangle of a JPEG with libjpeg-turbo, for random-resized-crop training.
 *
 * A random-resized crop keeps on average about half of the image, so most of a full decode is thrown
 * away. libjpeg-turbo can skip that work: rows below the crop are never decoded (the decode stops),
 * rows above it are entropy-decoded only (jpeg_skip_scanlines), and only the iMCU columns covering the
 * crop are dequantised, transformed and colour-converted (jpeg_crop_scanline).
 *
 * Same pixels as a full decode: chroma upsampling treats the edge of a cropped scanline as the image
 * edge, so the decoded columns reach one pixel past each side of the crop (into the next iMCU column
 * when the crop ends on one), and those extra columns are dropped. Warnings (e.g. a truncated file)
 * are errors, as in simplejpeg's strict mode, which decodes every other JPEG of the data pipeline.
 *
 * Built by hatch_build.py at install time and called through ctypes (data/jpeg_region.py); no Python
 * API is used, so one build serves every Python version.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

struct strict_errors {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char *message;
};

static void raise_error(j_common_ptr cinfo) {
    struct strict_errors *errors = (struct strict_errors *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, errors->message);
    longjmp(errors->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) raise_error(cinfo); /* a warning: corrupt or truncated data */
}

/* The size of an error message buffer the caller passes as `message`. */
int convnetlab_message_size(void) { return JMSG_LENGTH_MAX; }

/* Decode rows [top, top + height) and columns [left, left + width) of the image scaled by 1/scale_denom
 * into `out` (height x width x components bytes, row-major); components is 1 (gray) or 3 (RGB).
 * Returns 0, or -1 with a one-line reason in `message`. */
int convnetlab_decode_region(const unsigned char *data, unsigned long size, int scale_denom, int components,
                             int top, int left, int height, int width, unsigned char *out, char *message) {
    struct jpeg_decompress_struct cinfo;
    struct strict_errors errors;

    cinfo.err = jpeg_std_error(&errors.pub);
    errors.pub.error_exit = raise_error;
    errors.pub.emit_message = on_message;
    errors.message = message;
    if (setjmp(errors.escape)) { /* everything allocated since lives in libjpeg's pools */
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = scale_denom;
    jpeg_start_decompress(&cinfo);

    /* Written as differences, so that no sum can overflow. */
    if (top < 0 || left < 0 || height < 1 || width < 1 || height > (int)cinfo.output_height - top ||
        width > (int)cinfo.output_width - left || cinfo.output_components != components) {
        snprintf(message, JMSG_LENGTH_MAX, "region %dx%d at (%d, %d) is outside the %ux%u image", width, height,
                 left, top, cinfo.output_width, cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    JDIMENSION first = left > 0 ? (JDIMENSION)left - 1 : 0;
    JDIMENSION end = (JDIMENSION)(left + width) + 1 < cinfo.output_width ? (JDIMENSION)(left + width) + 1
                                                                         : cinfo.output_width;
    JDIMENSION columns = end - first;
    if (first > 0 || columns < cinfo.output_width) jpeg_crop_scanline(&cinfo, &first, &columns);

    JSAMPARRAY row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, columns * components, 1);
    if (top > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)top);
    size_t shift = (size_t)((JDIMENSION)left - first) * components, row_bytes = (size_t)width * components;
    for (int y = 0; y < height; y++) {
        if (jpeg_read_scanlines(&cinfo, row, 1) != 1) {
            snprintf(message, JMSG_LENGTH_MAX, "no scanline %d", top + y);
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
        memcpy(out + (size_t)y * row_bytes, row[0] + shift, row_bytes);
    }
    jpeg_abort_decompress(&cinfo); /* the rows below the region are never decoded */
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
