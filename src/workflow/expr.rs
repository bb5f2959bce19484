//! PLACEHOLDER until the real module lands (same API).
#![allow(missing_docs, dead_code)]

#[derive(Debug)]
pub struct ExprRef {
    pub start: usize,
    pub end: usize,
    pub source: String,
    pub raw: bool,
}
#[derive(Debug)]
pub enum Segment {
    Lit(String),
    Expr(ExprRef),
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
    pub offset: Option<usize>,
    pub expr: Option<String>,
}

pub fn has_expressions(s: &str) -> bool {
    s.contains("${{")
}

pub fn parse_template(s: &str) -> Result<Vec<Segment>, ExprError> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut base = 0;
    while let Some(i) = rest.find("${{") {
        out.push(Segment::Lit(rest[..i].to_owned()));
        let Some(j) = rest[i..].find("}}") else {
            return Err(ExprError {
                message: "unterminated `${{`".into(),
                offset: Some(base + i),
                expr: None,
            });
        };
        let inner = rest[i + 3..i + j].trim();
        let (src, raw) = match inner.strip_suffix("| raw") {
            Some(x) => (x.trim().to_owned(), true),
            None => (inner.to_owned(), false),
        };
        out.push(Segment::Expr(ExprRef {
            start: base + i,
            end: base + i + j + 2,
            source: src,
            raw,
        }));
        base += i + j + 2;
        rest = &rest[i + j + 2..];
    }
    out.push(Segment::Lit(rest.to_owned()));
    Ok(out)
}

pub struct Evaluator {
    env: minijinja::Environment<'static>,
}
impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}
impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}
impl Evaluator {
    pub fn new() -> Self {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        Self { env }
    }
    pub fn check(&self, expr: &str) -> Result<(), ExprError> {
        self.env
            .compile_expression(expr)
            .map(|_| ())
            .map_err(|e| ExprError {
                message: e.to_string(),
                offset: None,
                expr: Some(expr.into()),
            })
    }
    pub fn check_template(&self, tpl: &str) -> Vec<ExprError> {
        match parse_template(tpl) {
            Err(e) => vec![e],
            Ok(segs) => segs
                .into_iter()
                .filter_map(|s| match s {
                    Segment::Expr(e) => self.check(&e.source).err(),
                    Segment::Lit(_) => None,
                })
                .collect(),
        }
    }
    pub fn eval(&self, expr: &str, ctx: &minijinja::Value) -> Result<minijinja::Value, ExprError> {
        let e = self.env.compile_expression(expr).map_err(|e| ExprError {
            message: e.to_string(),
            offset: None,
            expr: Some(expr.into()),
        })?;
        e.eval(ctx).map_err(|e| ExprError {
            message: e.to_string(),
            offset: None,
            expr: Some(expr.into()),
        })
    }
    pub fn truthy(&self, expr: &str, ctx: &minijinja::Value) -> Result<bool, ExprError> {
        Ok(self.eval(expr, ctx)?.is_true())
    }
    pub fn render_plain(&self, tpl: &str, ctx: &minijinja::Value) -> Result<String, ExprError> {
        let mut out = String::new();
        for s in parse_template(tpl)? {
            match s {
                Segment::Lit(l) => out.push_str(&l),
                Segment::Expr(e) => out.push_str(&self.eval(&e.source, ctx)?.to_string()),
            }
        }
        Ok(out)
    }
    pub fn render_shell(&self, tpl: &str, ctx: &minijinja::Value) -> Result<String, ExprError> {
        let mut out = String::new();
        for s in parse_template(tpl)? {
            match s {
                Segment::Lit(l) => out.push_str(&l),
                Segment::Expr(e) => {
                    let v = self.eval(&e.source, ctx)?.to_string();
                    out.push('\'');
                    out.push_str(&v.replace('\'', "'\\''"));
                    out.push('\'');
                }
            }
        }
        Ok(out)
    }
}
