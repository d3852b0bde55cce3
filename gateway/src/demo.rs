//! `ironbridge run --demo`: a packaging-line PLC (Modbus TCP) and a CNC machining centre
//! (OPC UA) simulated in-process on loopback, with the two demo services installed against
//! them, so a newcomer sees live data on `services/#` within seconds and nothing to set up; a
//! third service serves the PLC's values from the gateway's own OPC UA server (port 4842).
//!
//! The services are ordinary commissioning files (`commissioning-examples/demo-*.yml`) installed
//! through the same admin API as any other: they can be inspected, disabled or deleted, and
//! they stay installed. Starting the demo again updates them in place (a no-op when unchanged).

use std::f64::consts::TAU;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admin::services::{Authority, Operation, ServiceInput};
use admin::{Admin, AdminError};
use anyhow::Context as _;
use protocol_mapper::modbus::simulator::{Bank, Simulator};
use protocol_mapper::opcua::simulator::{
    NodeId, OpcuaSimulator, SimulatorConfig, ValueSetter, Variant,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The demo's commissioning files, also validated with the other examples.
pub const PLC_SERVICE: &str = include_str!("../../commissioning-examples/demo-plc.yml");
pub const CNC_SERVICE: &str = include_str!("../../commissioning-examples/demo-cnc.yml");
pub const OPCUA_SERVICE: &str = include_str!("../../commissioning-examples/demo-opcua-server.yml");

/// How often the simulated machines change their values.
const TICK: Duration = Duration::from_millis(250);

/// `demo:` in the settings file; `--demo` turns it on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    pub enabled: bool,
    /// The simulated PLC listens on 127.0.0.1 at this port (0 picks a free one).
    pub modbus_port: u16,
    /// The simulated CNC controller listens on 127.0.0.1 at this port (0 picks a free one).
    pub opcua_port: u16,
    /// The gateway's own OPC UA server of the demo (the PLC's values) listens here.
    pub opcua_server_port: u16,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            enabled: false,
            modbus_port: 5020,
            opcua_port: 4841,
            opcua_server_port: 4842,
        }
    }
}

/// The running simulators.
pub struct Demo {
    plc: Simulator,
    cnc: OpcuaSimulator,
    opcua_server_port: u16,
    stop: CancellationToken,
    machines: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Starts both simulated machines; their values change from the first tick.
    pub async fn start(settings: &DemoSettings, data_dir: &Path) -> anyhow::Result<Demo> {
        let plc = Simulator::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, settings.modbus_port)),
            128,
        )
        .await
        .with_context(|| {
            format!(
                "the demo PLC cannot listen on 127.0.0.1:{} (demo.modbus_port)",
                settings.modbus_port
            )
        })?;
        let mut cnc = OpcuaSimulator::build(SimulatorConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, settings.opcua_port)),
            host: "127.0.0.1".into(),
            user: None,
            pki_dir: data_dir.join("demo").join("opcua-pki"),
        })
        .await
        .map_err(anyhow::Error::msg)
        .context("the demo CNC controller cannot start (demo.opcua_port)")?;
        let cnc_nodes = CncNodes::add_to(&cnc);
        cnc.serve();
        info!(plc = %plc.addr, cnc = %cnc.addr, "Demo machines are running");

        let stop = CancellationToken::new();
        let machines = tokio::spawn(simulate(
            plc.shared_bank(),
            cnc_nodes,
            cnc.value_setter(),
            stop.clone(),
        ));
        Ok(Demo {
            plc,
            cnc,
            opcua_server_port: settings.opcua_server_port,
            stop,
            machines,
        })
    }

    pub fn plc_addr(&self) -> SocketAddr {
        self.plc.addr
    }

    pub fn cnc_addr(&self) -> SocketAddr {
        self.cnc.addr
    }

    /// Installs the demo services against the running simulators, or brings installed ones up
    /// to date and enables them.
    pub async fn install_services(&self, admin: &Admin) -> anyhow::Result<()> {
        let plc = json!({"plcHost": "127.0.0.1", "plcPort": self.plc.addr.port()});
        let cnc = json!({"cncHost": "127.0.0.1", "cncPort": self.cnc.addr.port()});
        let server = json!({"port": self.opcua_server_port});
        // The OPC UA server's service maps the PLC service's endpoints: it comes after it.
        for (file, parameters) in [
            (PLC_SERVICE, plc),
            (CNC_SERVICE, cnc),
            (OPCUA_SERVICE, server),
        ] {
            let parameters = parameters.as_object().cloned().unwrap_or_default();
            let id = commissioning::service_id_for(file, None, &parameters)
                .map_err(|d| anyhow::anyhow!("a demo service does not load: {d:?}"))?;
            match admin.service(&id).await {
                Ok(_) => {
                    admin
                        .reconfigure_service(
                            &id,
                            Some(file.to_string()),
                            Some(parameters),
                            &Authority::System,
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot update demo service {id}: {e}"))?;
                    admin
                        .operate(&id, Operation::Enable)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot enable demo service {id}: {e}"))?;
                }
                Err(AdminError::NotFound(_)) => {
                    admin
                        .install_service(
                            ServiceInput {
                                id: None,
                                commissioning_file: file.to_string(),
                                parameters,
                                target_state: None,
                            },
                            &Authority::System,
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot install demo service {id}: {e}"))?;
                }
                Err(e) => return Err(anyhow::anyhow!("cannot look up demo service {id}: {e}")),
            }
            info!(service = %id, "Demo service installed; its data is on services/{id}/#");
        }
        info!("Demo data: mosquitto_sub -h localhost -t 'services/#' -v");
        Ok(())
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.machines.await;
        self.plc.stop().await;
        self.cnc.stop().await;
    }
}

/// The CNC controller's variables.
struct CncNodes {
    spindle_speed: NodeId,
    feed: NodeId,
    program_state: NodeId,
    program_name: NodeId,
    part_count: NodeId,
}

impl CncNodes {
    fn add_to(cnc: &OpcuaSimulator) -> CncNodes {
        CncNodes {
            spindle_speed: cnc.add_variable("Spindle.Speed", 0.0f64, false),
            feed: cnc.add_variable("Feed", 0.0f64, false),
            program_state: cnc.add_variable("Program.State", "IDLE", false),
            program_name: cnc.add_variable("Program.Name", "O1001 BRACKET", false),
            part_count: cnc.add_variable("PartCount", 0u32, false),
        }
    }
}

/// What both machines show at `t` seconds since the demo started. Pure, so it can be tested.
#[derive(Debug, Clone, PartialEq)]
struct MachineState {
    temperature: f32,
    pressure: u16,
    motor_running: bool,
    parts: u32,
    spindle_speed: f64,
    feed: f64,
    program_running: bool,
    cnc_parts: u32,
}

/// The temperature when nobody has written a setpoint.
const DEFAULT_SETPOINT: f32 = 62.0;

/// The line runs 50 s and pauses 10 s and its temperature swings around `setpoint`; the mill
/// runs a 40 s program and idles 10 s.
fn machine_state(t: f64, setpoint: f32) -> MachineState {
    let line_cycle = t % 60.0;
    let motor_running = line_cycle < 50.0;
    let completed_line_cycles = (t / 60.0).floor();
    let parts_this_cycle = (line_cycle.min(50.0) / 2.5).floor();
    let mill_cycle = t % 50.0;
    let program_running = mill_cycle < 40.0;
    MachineState {
        temperature: setpoint
            + (4.0 * (TAU * t / 120.0).sin() + 0.3 * (TAU * t / 7.0).sin()) as f32,
        pressure: (1013.0 + 15.0 * (TAU * t / 30.0).sin()).round() as u16,
        motor_running,
        // One part every 2.5 s while the motor runs.
        parts: (completed_line_cycles * 20.0 + parts_this_cycle) as u32,
        // Whole revolutions per minute and tenths of mm/min, as a controller reports them.
        spindle_speed: match program_running {
            true => (12_000.0 + 300.0 * (TAU * t / 9.0).sin()).round(),
            false => 0.0,
        },
        feed: match program_running {
            true => ((1_500.0 + 120.0 * (TAU * t / 13.0).sin()) * 10.0).round() / 10.0,
            false => 0.0,
        },
        program_running,
        cnc_parts: (t / 50.0).floor() as u32,
    }
}

async fn simulate(
    plc: Arc<Mutex<Bank>>,
    cnc_nodes: CncNodes,
    cnc: ValueSetter,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let state = {
            let mut bank = plc.lock().unwrap_or_else(|e| e.into_inner());
            // Holding registers 100-101: the setpoint clients write (floatBE), 0 until then.
            let written =
                f32::from_bits((u32::from(bank.holding[100]) << 16) | u32::from(bank.holding[101]));
            let setpoint = match written.is_finite() && written != 0.0 {
                true => written.clamp(-50.0, 400.0),
                false => DEFAULT_SETPOINT,
            };
            let state = machine_state(started.elapsed().as_secs_f64(), setpoint);
            let temperature = state.temperature.to_bits();
            bank.holding[0] = (temperature >> 16) as u16;
            bank.holding[1] = temperature as u16;
            bank.input[10] = state.pressure;
            bank.coils[0] = state.motor_running;
            bank.holding[20] = (state.parts >> 16) as u16;
            bank.holding[21] = state.parts as u16;
            state
        };
        let program_state = match state.program_running {
            true => "RUNNING",
            false => "IDLE",
        };
        let values: [(NodeId, Variant); 5] = [
            (cnc_nodes.spindle_speed.clone(), state.spindle_speed.into()),
            (cnc_nodes.feed.clone(), state.feed.into()),
            (cnc_nodes.program_state.clone(), program_state.into()),
            (cnc_nodes.program_name.clone(), "O1001 BRACKET".into()),
            (cnc_nodes.part_count.clone(), state.cnc_parts.into()),
        ];
        if let Err(e) = cnc.set_values(values.into_iter()) {
            warn!(error = %e, "The demo CNC controller cannot update its values");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_and_the_mill_run_and_pause_in_cycles() {
        let start = machine_state(0.0, DEFAULT_SETPOINT);
        assert!(start.motor_running && start.program_running);
        assert_eq!((start.parts, start.cnc_parts), (0, 0));
        assert!((11_000.0..13_000.0).contains(&start.spindle_speed));

        let paused = machine_state(55.0, DEFAULT_SETPOINT);
        assert!(!paused.motor_running);
        assert_eq!(paused.parts, 20, "20 parts per 50 s run");
        assert_eq!(
            machine_state(59.0, DEFAULT_SETPOINT).parts,
            20,
            "no parts while paused"
        );

        let idle = machine_state(45.0, DEFAULT_SETPOINT);
        assert!(!idle.program_running);
        assert_eq!((idle.spindle_speed, idle.feed), (0.0, 0.0));
        assert_eq!(machine_state(51.0, DEFAULT_SETPOINT).cnc_parts, 1);

        for t in 0..600 {
            let state = machine_state(f64::from(t) / 2.0, DEFAULT_SETPOINT);
            assert!((57.0..67.0).contains(&state.temperature), "{state:?}");
            assert!((990..1030).contains(&state.pressure), "{state:?}");
        }
        let hotter = machine_state(0.0, 80.0);
        assert!((79.0..81.0).contains(&hotter.temperature), "{hotter:?}");
    }
}
