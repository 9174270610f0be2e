//! STM32L4R5 (NUCLEO-L4R5ZI): 120 MHz from the 16 MHz HSI16 (RM0432 §6,
//! §5.1.8, §3.3.3).
//!
//! Above 80 MHz the regulator runs range 1 in boost mode (PWR_CR5.R1MODE =
//! 0, set before the clock rises). PLL: HSI16 / M 1, x N 15 = 240 MHz VCO,
//! / R 2 = 120 MHz. Flash: `FLASH_WAIT_STATES` (5 at 120 MHz, range 1),
//! prefetch, instruction and data caches per the board file. The switch to
//! 120 MHz goes through AHB /2 for at least 1 us, as the manual requires
//! when SYSCLK rises above 80 MHz; then AHB, APB1, APB2 /1.
//!
//! Timing pin: GPIO port `PIN_PORT` (0 = A) pin `PIN_NUMBER`, push-pull.

use super::reg;
use crate::board;
use core::convert::Infallible;

const RCC: usize = 0x4002_1000;
const RCC_CR: usize = RCC;
const RCC_CFGR: usize = RCC + 0x08;
const RCC_PLLCFGR: usize = RCC + 0x0C;
const RCC_AHB2ENR: usize = RCC + 0x4C;
const RCC_APB1ENR1: usize = RCC + 0x58;
const PWR_CR5: usize = 0x4000_7080;
const FLASH_ACR: usize = 0x4002_2000;
const GPIO: usize = 0x4800_0000; // GPIOA; ports are 0x400 apart

const HSI_HZ: u32 = 16_000_000;
const PLL_M: u32 = 1;
const PLL_N: u32 = 15;
const PLL_R: u32 = 2;
const _: () = assert!(HSI_HZ / PLL_M * PLL_N / PLL_R == board::CLOCK_HZ, "PLL does not give the board's clock_hz");

pub fn init_clock() {
    reg::modify(RCC_APB1ENR1, 0, 1 << 28); // PWREN
    let _ = reg::read(RCC_APB1ENR1);
    reg::modify(PWR_CR5, 1 << 8, 0); // R1MODE = 0: range 1 boost
    let caches = (1 << 8) | (board::ICACHE as u32) << 9 | (board::DCACHE as u32) << 10; // PRFTEN, ICEN, DCEN
    reg::modify(FLASH_ACR, 0xF | (0b111 << 8), board::FLASH_WAIT_STATES | caches);
    reg::wait(FLASH_ACR, 0xF, board::FLASH_WAIT_STATES);
    reg::modify(RCC_CR, 0, 1 << 8); // HSION
    reg::wait(RCC_CR, 1 << 10, 1 << 10); // HSIRDY
                                         // PLLSRC = HSI16 (10), PLLM = M - 1 (bits 7:4), PLLN (14:8), PLLR = /2 (00), PLLREN.
    reg::modify(
        RCC_PLLCFGR,
        0b11 | (0xF << 4) | (0x7F << 8) | (0b11 << 25) | (1 << 24),
        0b10 | ((PLL_M - 1) << 4) | (PLL_N << 8) | (1 << 24),
    );
    reg::modify(RCC_CR, 0, 1 << 24); // PLLON
    reg::wait(RCC_CR, 1 << 25, 1 << 25); // PLLRDY
    reg::modify(RCC_CFGR, 0xF << 4, 0b1000 << 4); // HPRE /2 during the switch
    reg::modify(RCC_CFGR, 0b11, 0b11); // SW = PLL
    reg::wait(RCC_CFGR, 0b11 << 2, 0b11 << 2); // SWS = PLL
    cortex_m::asm::delay(board::CLOCK_HZ / 2 / 1_000_000 + 1); // >= 1 us at 60 MHz
    reg::modify(RCC_CFGR, (0xF << 4) | (0b111 << 8) | (0b111 << 11), 0); // HPRE, PPRE1, PPRE2 /1
}

/// A GPIO output pin.
pub struct Pin {
    bsrr: usize,
    bit: u32,
}

impl Pin {
    pub fn init(port: u32, pin: u32) -> Self {
        let base = GPIO + 0x400 * port as usize;
        reg::modify(RCC_AHB2ENR, 0, 1 << port); // GPIOxEN
        let _ = reg::read(RCC_AHB2ENR);
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
