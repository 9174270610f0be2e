/* Minimal Cortex-M4F start-up for QEMU mps2-an386: vector table, .data/.bss
 * set-up, FPU on (the staticlib is built for the hard-float ABI), main, then
 * a semihosting exit with main's status. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static void semihosting(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

/* Write a string to the host's stdout: SYS_OPEN ":tt" for writing (mode 4)
 * once, then SYS_WRITE (QEMU's SYS_WRITE0 would go to its stderr). */
void semihosting_write(const char *s) {
    static uint32_t handle;
    static int opened;
    uint32_t len = 0;
    while (s[len]) len++;
    if (!opened) {
        const uint32_t open_args[3] = {(uint32_t)(uintptr_t)":tt", 4, 3};
        register uint32_t r0 __asm__("r0") = 0x01; /* SYS_OPEN */
        register const void *r1 __asm__("r1") = open_args;
        __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
        handle = r0;
        opened = 1;
    }
    const uint32_t write_args[3] = {handle, (uint32_t)(uintptr_t)s, len};
    semihosting(0x05, write_args); /* SYS_WRITE */
}

static void semihosting_exit(int ok) {
    /* SYS_EXIT, ADP_Stopped_ApplicationExit or ADP_Stopped_RunTimeErrorUnknown. */
    semihosting(0x18, (const void *)(uintptr_t)(ok ? 0x20026u : 0x20023u));
    for (;;) {}
}

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n isb");
    semihosting_exit(main() == 0);
}

void Fault_Handler(void) {
    semihosting_write("releq-c: fault\n");
    semihosting_exit(0);
}

__attribute__((section(".vector_table"), used)) static const void *const vectors[16] = {
    &_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
};
