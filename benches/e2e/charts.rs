//! The report's charts, SVG files beside it drawn with `plotters` (SVG
//! backend only): bars for totals and per-image figures, lines for how
//! the figures grow as images are added. Every chart reads the figures
//! the report's tables show; nothing is measured here.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use plotters::coord::combinators::{BuildNestedCoord, NestedValue};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::materialize::TWINS;
use crate::system::{mb, median, secs};
use crate::versus_go::ToolFigures;
use crate::Figures;

/// A chart of the report: its file (beside the report), title and caption.
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub caption: &'static str,
}

pub const CHARTS: [Chart; 4] = [
    Chart {
        file: "benchmarks-import.svg",
        title: "Import, image by image",
        caption: "**Import, image by image** (bw: bookworm, tx: trixie): what each image adds to \
                  the store on disk, beside its tar, and its import time. Our store grows by \
                  the chunks no earlier image had; the Go tool's by the extracted files.",
    },
    Chart {
        file: "benchmarks-trade.svg",
        title: "Against the Go containers-storage",
        caption: "**Against the Go containers-storage**, six images: import and the first \
                  mount of a container on each together (the Go tool extracts at import, we \
                  build an image's directory at its first mount), mounts after the first, and \
                  disk: what the imports took, and everything with all six mounted.",
    },
    Chart {
        file: "benchmarks-growth.svg",
        title: "As images are added",
        caption: "**As images are added**, one after the other (import, then a container \
                  mounted): disk taken by the imports and in all, and the time of import + \
                  first mount, cumulative. The Go tool's two disk lines coincide: its mounts \
                  take no more disk, its imports took it all.",
    },
    Chart {
        file: "benchmarks-materialize.svg",
        title: "Materialized",
        caption: "**Materialized** (`mount -r`, nothing mounted before): disk used by the six \
                  images against the six trees `tar -x` gives, and each mount's time against \
                  `tar -x` of the same tar: cold for the bases, with the base materialized for \
                  the others, and with every file in the object cache.",
    },
];

const OURS: RGBColor = RGBColor(31, 119, 180);
const GO: RGBColor = RGBColor(230, 120, 20);
const TAR: RGBColor = RGBColor(140, 140, 140);
const FONT: &str = "sans-serif";

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One series of bars: a name, a colour, a value per category. A second
/// value per category, if any, is stacked on the first in a lighter
/// shade, named `stacked`.
struct Bars {
    name: String,
    color: RGBColor,
    values: Vec<f64>,
    stacked: Option<(String, Vec<f64>)>,
}

fn bars(name: &str, color: RGBColor, values: Vec<f64>) -> Bars {
    Bars {
        name: name.into(),
        color,
        values,
        stacked: None,
    }
}

/// Grouped bars, one group per category, with each bar's total written
/// above it by `label`.
fn bar_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[Bars],
    label: &dyn Fn(f64) -> String,
) -> Result<()> {
    let total = |s: &Bars, c: usize| s.values[c] + s.stacked.as_ref().map_or(0.0, |(_, v)| v[c]);
    let top = series
        .iter()
        .flat_map(|s| (0..categories.len()).map(move |c| total(s, c)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.3;
    let n = categories.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(58)
        .build_cartesian_2d((0..n as i32 - 1).nested_coord(|_| 0f64..1f64), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_labels(n)
        .y_desc(y_desc)
        .y_label_formatter(&|v| axis_label(y_desc, *v))
        .x_label_formatter(&|x| category_label(categories, x))
        .label_style((FONT, 13))
        .draw()?;
    // Bar j of k in category c spans [left, left + width) of its slot.
    let width = 0.8 / series.len() as f64;
    let at = |c: usize, x: f64| NestedValue::Value(c as i32, x);
    for (j, s) in series.iter().enumerate() {
        let left = 0.1 + j as f64 * width;
        let (l, r) = (left + 0.01, left + width - 0.01);
        let color = s.color;
        chart
            .draw_series((0..n).map(|c| {
                Rectangle::new([(at(c, l), 0.0), (at(c, r), s.values[c])], color.filled())
            }))?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        if let Some((name, upper)) = &s.stacked {
            let light = color.mix(0.4);
            chart
                .draw_series((0..n).map(|c| {
                    Rectangle::new(
                        [(at(c, l), s.values[c]), (at(c, r), s.values[c] + upper[c])],
                        light.filled(),
                    )
                }))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], light.filled())
                });
        }
        chart.draw_series((0..n).filter(|&c| total(s, c) > 0.0).map(|c| {
            Text::new(
                label(total(s, c)),
                (at(c, left + width / 2.0), total(s, c) + top * 0.01),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(TAR)
        .draw()?;
    Ok(())
}

/// Lines over the images, one point per image.
fn line_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, ShapeStyle, Vec<f64>)],
) -> Result<()> {
    let n = categories.len();
    let top = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(58)
        .build_cartesian_2d((0..n as i32 - 1).nested_coord(|_| 0f64..1f64), 0f64..top)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_labels(n)
        .y_desc(y_desc)
        .y_label_formatter(&|v| axis_label(y_desc, *v))
        .x_label_formatter(&|x| format!("+{}", category_label(categories, x)))
        .label_style((FONT, 13))
        .draw()?;
    let at = |i: usize| NestedValue::Category(i as i32);
    for (name, style, values) in series {
        let style = *style;
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (at(i), *v)),
                style,
            ))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        chart.draw_series(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Circle::new((at(i), *v), 3, style.color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(TAR)
        .draw()?;
    Ok(())
}

/// The name of the category at a key point of the x axis.
fn category_label(categories: &[String], x: &NestedValue<i32, f64>) -> String {
    match x {
        NestedValue::Category(c) => categories.get(*c as usize).cloned().unwrap_or_default(),
        NestedValue::Value(..) => String::new(),
    }
}

/// A y axis value: whole megabytes, seconds to a tenth.
fn axis_label(y_desc: &str, v: f64) -> String {
    if y_desc == "MB" {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn mb_label(v: f64) -> String {
    format!("{v:.0} MB")
}

fn s_label(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0} ms", v * 1000.0)
    } else {
        format!("{v:.1} s")
    }
}

/// Short names for the x axis: "bw python3" for bookworm-python3.
fn short_names(images: &[String]) -> Vec<String> {
    images
        .iter()
        .map(|n| {
            n.replacen("bookworm-", "bw ", 1)
                .replacen("trixie-", "tx ", 1)
        })
        .collect()
}

/// Per-image increments of a cumulative series.
fn steps(cumulative: &[u64]) -> Vec<f64> {
    let mut prev = 0;
    cumulative
        .iter()
        .map(|&c| {
            let d = c.saturating_sub(prev);
            prev = c;
            mb(d)
        })
        .collect()
}

fn cumulative_secs(v: &[Duration]) -> Vec<f64> {
    let mut sum = 0.0;
    v.iter()
        .map(|d| {
            sum += secs(*d);
            sum
        })
        .collect()
}

fn tools(f: &Figures) -> Vec<(&ToolFigures, RGBColor)> {
    let mut out = vec![(&f.versus.ours, OURS)];
    if let Ok(go) = &f.versus.go {
        out.push((go, GO));
    }
    out
}

fn tool_name(t: &ToolFigures) -> String {
    if t.name.starts_with("Go") {
        "Go containers-storage".into()
    } else {
        "ours".into()
    }
}

/// Draws every chart into `dir`.
pub fn draw(f: &Figures, dir: &Path) -> Result<()> {
    let names = short_names(&f.images);
    let tools = tools(f);

    // Import, image by image.
    let path = dir.join(CHARTS[0].file);
    let root = SVGBackend::new(&path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_vertically(380);
    let mut size = vec![bars(
        "tar",
        TAR,
        f.input_sizes.iter().map(|b| mb(*b)).collect(),
    )];
    for (t, color) in &tools {
        size.push(bars(&tool_name(t), *color, steps(&t.disk_imported())));
    }
    bar_panel(
        &left,
        "Store growth per image",
        "MB",
        &names,
        &size,
        &mb_label,
    )?;
    let time: Vec<Bars> = tools
        .iter()
        .map(|(t, color)| {
            bars(
                &tool_name(t),
                *color,
                t.import_per_image().iter().map(|d| secs(*d)).collect(),
            )
        })
        .collect();
    bar_panel(
        &right,
        "Import time per image",
        "seconds",
        &names,
        &time,
        &s_label,
    )?;
    root.present()?;

    // The trade against the Go tool.
    let path = dir.join(CHARTS[1].file);
    let root = SVGBackend::new(&path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let categories = vec![
        "import + first mount".to_string(),
        "mounts after the first".to_string(),
    ];
    let time: Vec<Bars> = tools
        .iter()
        .map(|(t, color)| Bars {
            name: format!("{}: import", tool_name(t)),
            color: *color,
            values: vec![secs(t.import_total()), secs(t.remount_total())],
            stacked: Some((
                format!("{}: first mount", tool_name(t)),
                vec![secs(t.first_mount_total()), 0.0],
            )),
        })
        .collect();
    bar_panel(
        &left,
        "Time, six images",
        "seconds",
        &categories,
        &time,
        &s_label,
    )?;
    let categories = vec!["imports".to_string(), "all, six mounted".to_string()];
    let disk: Vec<Bars> = tools
        .iter()
        .map(|(t, color)| {
            bars(
                &tool_name(t),
                *color,
                vec![
                    mb(*t.disk_imported().last().unwrap()),
                    mb(*t.disk_mounted().last().unwrap()),
                ],
            )
        })
        .collect();
    bar_panel(
        &right,
        "Disk used, six images",
        "MB",
        &categories,
        &disk,
        &mb_label,
    )?;
    root.present()?;

    // Growth.
    let path = dir.join(CHARTS[2].file);
    let root = SVGBackend::new(&path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let mut input = 0;
    let mut disk = vec![(
        "tars".to_string(),
        TAR.stroke_width(2),
        f.input_sizes
            .iter()
            .map(|b| {
                input += b;
                mb(input)
            })
            .collect::<Vec<f64>>(),
    )];
    for (t, color) in &tools {
        disk.push((
            format!("{}: imports", tool_name(t)),
            color.stroke_width(2),
            t.disk_imported().iter().map(|b| mb(*b)).collect(),
        ));
        disk.push((
            format!("{}: all, mounted", tool_name(t)),
            color.mix(0.5).stroke_width(2),
            t.disk_mounted().iter().map(|b| mb(*b)).collect(),
        ));
    }
    line_panel(&left, "Disk used", "MB", &names, &disk)?;
    let mut time = Vec::new();
    for (t, color) in &tools {
        let both: Vec<Duration> = t
            .import_per_image()
            .iter()
            .zip(t.first_mount_per_image())
            .map(|(a, b)| *a + b)
            .collect();
        time.push((
            format!("{}: import + first mount", tool_name(t)),
            color.stroke_width(2),
            cumulative_secs(&both),
        ));
    }
    line_panel(&right, "Time, cumulative", "seconds", &names, &time)?;
    root.present()?;

    // Materialized.
    let m = &f.materialize;
    let path = dir.join(CHARTS[3].file);
    let root = SVGBackend::new(&path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(380);
    let categories = vec!["six images".to_string()];
    let disk = vec![
        bars("tar -x trees", TAR, vec![mb(m.tar_bytes)]),
        bars("ours, materialized", OURS, vec![mb(m.ours_bytes)]),
    ];
    bar_panel(&left, "Disk used", "MB", &categories, &disk, &mb_label)?;
    let n = f.images.len();
    let cached: Vec<f64> = (0..n)
        .map(|i| {
            if TWINS.iter().any(|(t, _)| *t == i) {
                secs(median(&m.cached[i]))
            } else {
                0.0
            }
        })
        .collect();
    let time = vec![
        bars(
            "tar -x",
            TAR,
            (0..n).map(|i| secs(median(&m.tar[i]))).collect(),
        ),
        bars(
            "ours: cold / base cached",
            OURS,
            (0..n).map(|i| secs(median(&m.ours[i]))).collect(),
        ),
        bars("ours: every file cached", OURS.mix(0.5).into_rgb(), cached),
    ];
    bar_panel(
        &right,
        "Mount time per image",
        "seconds",
        &names,
        &time,
        &s_label,
    )?;
    root.present()?;
    Ok(())
}

trait IntoRgb {
    fn into_rgb(self) -> RGBColor;
}

impl IntoRgb for RGBAColor {
    /// The colour over white.
    fn into_rgb(self) -> RGBColor {
        let RGBAColor(r, g, b, a) = self;
        let over = |c: u8| (c as f64 * a + 255.0 * (1.0 - a)).round() as u8;
        RGBColor(over(r), over(g), over(b))
    }
}
