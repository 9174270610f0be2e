/* A C firmware running a releq model with the releq-capi staticlib: no libc,
 * no allocator, no HAL. The model comes from `releq export lenet5.releq
 * --format c --out lenet5.h`, the inputs (MNIST test images 0-3 as input
 * codes) from inputs.h. Output over semihosting (QEMU mps2-an386); see
 * README.md. */
#include <stdint.h>
#include "releq.h"
#include "lenet5.h"
#include "inputs.h"   /* INPUT_COUNT, static const int8_t inputs[INPUT_COUNT][LENET5_INPUT_LEN] */

void semihosting_write(const char *s);

static releq_model model;                              /* the validated plan (borrows the blob) */
static uint32_t arena[(LENET5_ARENA_BYTES + 3) / 4];   /* word aligned, exactly sized */

static void put_int(int v) {
    char buf[12];
    int i = 11;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) buf[--i] = '-';
    semihosting_write(buf + i);
}

int main(void) {
    char msg[128];
    int32_t rc = releq_model_check(&model, lenet5_blob, LENET5_BLOB_BYTES, msg, sizeof msg);
    if (rc != RELEQ_OK) {
        semihosting_write("releq-c: invalid model: ");
        semihosting_write(msg);
        semihosting_write("\n");
        return 1;
    }
    releq_info info;
    releq_model_info(&model, &info);
    semihosting_write("releq-c: arena ");
    put_int((int)info.arena_bytes);
    semihosting_write(" B (LENET5_ARENA_BYTES ");
    put_int((int)LENET5_ARENA_BYTES);
    semihosting_write(")\n");
    for (int n = 0; n < INPUT_COUNT; n++) {
        int8_t output[LENET5_OUTPUT_LEN];
        rc = releq_run(&model, (int8_t *)arena, LENET5_ARENA_BYTES, inputs[n], LENET5_INPUT_LEN, output,
                       LENET5_OUTPUT_LEN);
        if (rc != RELEQ_OK) {
            semihosting_write("releq-c: run failed: ");
            semihosting_write(releq_status_name(rc));
            semihosting_write("\n");
            return 1;
        }
        semihosting_write("input ");
        put_int(n);
        semihosting_write(": output");
        for (unsigned i = 0; i < LENET5_OUTPUT_LEN; i++) {
            semihosting_write(" ");
            put_int(output[i]);
        }
        semihosting_write("\n");
    }
    /* One byte of arena short is refused, not overrun. */
    int8_t out[LENET5_OUTPUT_LEN];
    rc = releq_run(&model, (int8_t *)arena, LENET5_ARENA_BYTES - 1, inputs[0], LENET5_INPUT_LEN, out,
                   LENET5_OUTPUT_LEN);
    semihosting_write("short arena: ");
    semihosting_write(releq_status_name(rc));
    semihosting_write("\nreleq-c: done\n");
    return 0;
}
