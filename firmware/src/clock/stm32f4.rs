//! STM32F446 (NUCLEO-F446RE): 180 MHz from the 16 MHz HSI (RM0390 §6, §3.4).
//!
//! PLL: HSI / M 8 = 2 MHz, x N 180 = 360 MHz VCO, / P 2 = 180 MHz SYSCLK.
//! Above 168 MHz the regulator needs scale 1 and over-drive (ODEN then
//! ODSWEN). Flash: `FLASH_WAIT_STATES` (5 at 180 MHz, 2.7-3.6 V), prefetch,
//! ART instruction and data caches per the board file. AHB /1, APB1 /4
//! (45 MHz max), APB2 /2 (90 MHz max).
//!
//! Timing pin: GPIO port `PIN_PORT` (0 = A) pin `PIN_NUMBER` as push-pull
//! output through BSRR.

use super::reg;
use crate::board;
use core::convert::Infallible;

const RCC: usize = 0x4002_3800;
const RCC_CR: usize = RCC;
const RCC_PLLCFGR: usize = RCC + 0x04;
const RCC_CFGR: usize = RCC + 0x08;
const RCC_AHB1ENR: usize = RCC + 0x30;
const RCC_APB1ENR: usize = RCC + 0x40;
const PWR_CR: usize = 0x4000_7000;
const PWR_CSR: usize = 0x4000_7004;
const FLASH_ACR: usize = 0x4002_3C00;
const GPIO: usize = 0x4002_0000; // GPIOA; ports are 0x400 apart

const HSI_HZ: u32 = 16_000_000;
const PLL_M: u32 = 8;
const PLL_N: u32 = 180;
const PLL_P: u32 = 2;
const _: () = assert!(HSI_HZ / PLL_M * PLL_N / PLL_P == board::CLOCK_HZ, "PLL does not give the board's clock_hz");

pub fn init_clock() {
    reg::modify(RCC_APB1ENR, 0, 1 << 28); // PWREN
    reg::modify(PWR_CR, 0b11 << 14, 0b11 << 14); // VOS scale 1
                                                 // PLLM, PLLN, PLLP (00 = /2), PLLSRC = HSI (bit 22 = 0); PLLQ, PLLR kept.
    reg::modify(RCC_PLLCFGR, 0x3F | (0x1FF << 6) | (0b11 << 16) | (1 << 22), PLL_M | (PLL_N << 6));
    reg::modify(RCC_CR, 0, 1 << 24); // PLLON
    reg::wait(RCC_CR, 1 << 25, 1 << 25); // PLLRDY
    reg::modify(PWR_CR, 0, 1 << 16); // ODEN
    reg::wait(PWR_CSR, 1 << 16, 1 << 16); // ODRDY
    reg::modify(PWR_CR, 0, 1 << 17); // ODSWEN
    reg::wait(PWR_CSR, 1 << 17, 1 << 17); // ODSWRDY
    let caches = (1 << 8) | (board::ICACHE as u32) << 9 | (board::DCACHE as u32) << 10; // PRFTEN, ICEN, DCEN
    reg::modify(FLASH_ACR, 0xF | (0b111 << 8), board::FLASH_WAIT_STATES | caches);
    reg::wait(FLASH_ACR, 0xF, board::FLASH_WAIT_STATES);
    // HPRE /1, PPRE1 /4 (101), PPRE2 /2 (100), SW = PLL (10).
    reg::modify(RCC_CFGR, 0xF0 | (0b111 << 10) | (0b111 << 13) | 0b11, (0b101 << 10) | (0b100 << 13) | 0b10);
    reg::wait(RCC_CFGR, 0b11 << 2, 0b10 << 2); // SWS = PLL
}

/// A GPIO output pin.
pub struct Pin {
    bsrr: usize,
    bit: u32,
}

impl Pin {
    pub fn init(port: u32, pin: u32) -> Self {
        let base = GPIO + 0x400 * port as usize;
        reg::modify(RCC_AHB1ENR, 0, 1 << port); // GPIOxEN
        let _ = reg::read(RCC_AHB1ENR); // the clock needs two cycles
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
