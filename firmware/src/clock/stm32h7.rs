//! STM32H743 (NUCLEO-H743ZI): 400 MHz from the 64 MHz HSI (RM0433 §6, §8,
//! §4.3.8).
//!
//! 400 MHz is the top clock of every silicon revision at voltage scale 1;
//! 480 MHz needs revision V and VOS0 (the over-drive), which this set-up
//! does not attempt. Supply: LDO (the NUCLEO's default), then VOS1. PLL1:
//! HSI / M 4 = 16 MHz, x N 50 = 800 MHz VCO (wide range), / P 2 = 400 MHz
//! SYSCLK; HCLK (AXI, flash) /2 = 200 MHz, APB1..4 /2 = 100 MHz. Flash:
//! `FLASH_WAIT_STATES` (2 at 200 MHz HCLK, VOS1) with WRHIGHFREQ = 2. The
//! core's I-cache and D-cache per the board file; the RTT buffers live in
//! DTCM (the board's `memory.ram`), which no cache covers, so the probe sees
//! what the core wrote.
//!
//! Timing pin: GPIO port `PIN_PORT` (0 = A) pin `PIN_NUMBER`, push-pull.

use super::reg;
use crate::board;
use core::convert::Infallible;

const RCC: usize = 0x5802_4400;
const RCC_CR: usize = RCC;
const RCC_CFGR: usize = RCC + 0x10;
const RCC_D1CFGR: usize = RCC + 0x18;
const RCC_D2CFGR: usize = RCC + 0x1C;
const RCC_D3CFGR: usize = RCC + 0x20;
const RCC_PLLCKSELR: usize = RCC + 0x28;
const RCC_PLLCFGR: usize = RCC + 0x2C;
const RCC_PLL1DIVR: usize = RCC + 0x30;
const RCC_AHB4ENR: usize = RCC + 0xE0;
const PWR_CSR1: usize = 0x5802_4804;
const PWR_CR3: usize = 0x5802_480C;
const PWR_D3CR: usize = 0x5802_4818;
const FLASH_ACR: usize = 0x5200_2000;
const GPIO: usize = 0x5802_0000; // GPIOA; ports are 0x400 apart

const HSI_HZ: u32 = 64_000_000;
const PLL_M: u32 = 4;
const PLL_N: u32 = 50;
const PLL_P: u32 = 2;
const _: () = assert!(HSI_HZ / PLL_M * PLL_N / PLL_P == board::CLOCK_HZ, "PLL1 does not give the board's clock_hz");

pub fn init_clock() {
    // Supply: LDO on, bypass off (writable once after power-on), then VOS1.
    reg::modify(PWR_CR3, 0b111, 0b010);
    reg::wait(PWR_CSR1, 1 << 13, 1 << 13); // ACTVOSRDY
    reg::modify(PWR_D3CR, 0b11 << 14, 0b11 << 14); // VOS1
    reg::wait(PWR_D3CR, 1 << 13, 1 << 13); // VOSRDY
                                           // Flash latency and programming delay for 200 MHz HCLK.
    reg::modify(FLASH_ACR, 0xF | (0b11 << 4), board::FLASH_WAIT_STATES | (0b10 << 4));
    reg::wait(FLASH_ACR, 0xF, board::FLASH_WAIT_STATES);
    // PLL1 from HSI: DIVM1; input range 8-16 MHz (11), wide VCO, P, Q, R enabled.
    reg::modify(RCC_PLLCKSELR, 0b11 | (0x3F << 4), PLL_M << 4);
    reg::modify(RCC_PLLCFGR, 0b1111 | (0b111 << 16), (0b11 << 2) | (0b111 << 16));
    reg::write(RCC_PLL1DIVR, (PLL_N - 1) | ((PLL_P - 1) << 9) | (3 << 16) | (1 << 24));
    reg::modify(RCC_CR, 0, 1 << 24); // PLL1ON
    reg::wait(RCC_CR, 1 << 25, 1 << 25); // PLL1RDY
                                         // HPRE /2, D1PPRE /2; D2PPRE1, D2PPRE2 /2; D3PPRE /2.
    reg::modify(RCC_D1CFGR, 0xF | (0b111 << 4) | (0xF << 8), 0b1000 | (0b100 << 4));
    reg::modify(RCC_D2CFGR, (0b111 << 4) | (0b111 << 8), (0b100 << 4) | (0b100 << 8));
    reg::modify(RCC_D3CFGR, 0b111 << 4, 0b100 << 4);
    reg::modify(RCC_CFGR, 0b111, 0b011); // SW = PLL1
    reg::wait(RCC_CFGR, 0b111 << 3, 0b011 << 3); // SWS = PLL1
                                                 // SAFETY: called once at boot; SCB and CPUID are used by nothing else.
    let mut p = unsafe { cortex_m::Peripherals::steal() };
    if board::ICACHE {
        p.SCB.enable_icache();
    }
    if board::DCACHE {
        p.SCB.enable_dcache(&mut p.CPUID);
    }
}

/// A GPIO output pin.
pub struct Pin {
    bsrr: usize,
    bit: u32,
}

impl Pin {
    pub fn init(port: u32, pin: u32) -> Self {
        let base = GPIO + 0x400 * port as usize;
        reg::modify(RCC_AHB4ENR, 0, 1 << port); // GPIOxEN
        let _ = reg::read(RCC_AHB4ENR);
        reg::modify(base, 0b11 << (2 * pin), 0b01 << (2 * pin)); // MODER: output
        let p = Self { bsrr: base + 0x18, bit: pin };
        reg::write(p.bsrr, 1 << (16 + pin));
        p
    }
    pub fn set_high(&mut self) -> Result<(), Infallible> {
        reg::write(self.bsrr, 1 << self.bit);
        Ok(())
    }
    pub fn set_low(&mut self) -> Result<(), Infallible> {
        reg::write(self.bsrr, 1 << (16 + self.bit));
        Ok(())
    }
}
