//! Check 10, order states: no order `processing` past its finalize
//! deadline, and `valid` exactly when the order has one issued
//! certificate, the one it names; and the per-order half of check 3 (at
//! most one final certificate per order).

use super::report::Subject;
use super::scan::Audit;
use store::audit::{AuditCertificate, AuditOrder};

const KNOWN_STATUSES: [&str; 5] = ["pending", "ready", "processing", "valid", "invalid"];

impl Audit {
    pub(super) fn order_states(&mut self, order: &AuditOrder, certs: &[AuditCertificate]) {
        self.report.checked(10, 1);
        let subject = || Subject::Order(order.id.clone());
        let issued: Vec<&AuditCertificate> = certs.iter().filter(|c| c.state == "issued").collect();
        let finals: Vec<&str> = certs
            .iter()
            .filter(|c| c.final_der.is_some() || c.state == "issued")
            .map(|c| c.serial.as_str())
            .collect();
        if finals.len() > 1 {
            self.report.violation(
                3,
                subject(),
                format!(
                    "{} final certificates for one order: {}",
                    finals.len(),
                    finals.join(", ")
                ),
            );
        }
        if !KNOWN_STATUSES.contains(&order.status.as_str()) {
            self.report.violation(
                10,
                subject(),
                format!("status {:?} is no order status", order.status),
            );
            return;
        }
        if order.status == "processing" {
            match order.finalize_deadline {
                None => {
                    self.report
                        .violation(10, subject(), "processing with no finalize deadline")
                }
                Some(deadline)
                    if deadline + self.settings.deadline_grace_ms < self.settings.now =>
                {
                    self.report.violation(
                        10,
                        subject(),
                        format!(
                            "processing (step {}) {} s past its finalize deadline",
                            order.step.as_deref().unwrap_or("none"),
                            (self.settings.now - deadline) / 1000
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        if order.status != "valid" {
            for cert in &issued {
                self.report.violation(
                    10,
                    subject(),
                    format!(
                        "{} with an issued certificate, {}",
                        order.status, cert.serial
                    ),
                );
            }
            return;
        }
        let Some(serial) = &order.certificate_serial else {
            self.report
                .violation(10, subject(), "valid without a certificate serial");
            return;
        };
        match certs.iter().find(|c| &c.serial == serial) {
            None => self.report.violation(
                10,
                subject(),
                format!("valid, naming certificate {serial}, which is not one of its own"),
            ),
            Some(cert) if cert.state != "issued" || cert.final_der.is_none() => {
                self.report.violation(
                    10,
                    subject(),
                    format!(
                        "valid, naming certificate {serial}, which is {} {}",
                        cert.state,
                        if cert.final_der.is_none() {
                            "without a final certificate"
                        } else {
                            "with a final certificate"
                        }
                    ),
                )
            }
            Some(_) => {}
        }
        if issued.len() > 1 {
            let serials: Vec<&str> = issued.iter().map(|c| c.serial.as_str()).collect();
            self.report.violation(
                10,
                subject(),
                format!(
                    "valid with {} issued certificates: {}",
                    issued.len(),
                    serials.join(", ")
                ),
            );
        }
    }
}
