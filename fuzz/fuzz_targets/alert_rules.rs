//! Rule files and alert templates: bytes as a Prometheus rule file (YAML, validation,
//! PromQL, template parsing), and as a Go template expanded over fixed alert data.
//! Nothing may panic or hang.
#![no_main]

use calm_collector::alerts::rules::parse_rules;
use calm_collector::alerts::template::{Template, TemplateData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_rules("fuzz.yml", text);
    if let Ok(t) = Template::parse(text) {
        let mut d = TemplateData::default();
        d.labels.insert("instance".into(), "host:9100".into());
        d.value = 0.5;
        let _ = t.execute(&d, None);
    }
});
