//! The expression half of the recognizer: Pratt parsing of operators, primaries,
//! calls and their arguments, arrays, lambdas, `if` and block expressions, number and
//! string literals, each returning the expression's node count.

use super::*;

impl<'a> Recognizer<'a> {
    /// An expression whose depth `limits` checks (statement values, defaults).
    pub(super) fn top_expr(&mut self) -> R<()> {
        if self.expr()? > Limits::DEFAULT.max_expr_depth {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    // ---- expressions ----

    /// `expr`; returns the depth of its tree.
    pub(super) fn expr(&mut self) -> R<usize> {
        // Lambdas and `if`s nest without brackets (up to 256 deep).
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.expr_inner())
    }

    pub(super) fn expr_inner(&mut self) -> R<usize> {
        self.node()?;
        let mut els: Vec<El> = Vec::with_capacity(8);
        let mut comparison = false;
        loop {
            // prefix*
            loop {
                self.ws();
                match self.peek() {
                    None => return Err(Stop::Incomplete),
                    Some(b'-') => self.pos += 1,
                    Some(b'!') if self.s.get(self.pos + 1) != Some(&b'=') => self.pos += 1,
                    _ => {
                        if !self.lit_kw("not")? {
                            break;
                        }
                    }
                }
                self.node()?;
                els.push(El::Prefix);
            }
            let d = self.primary()?;
            els.push(El::Primary(d));
            // postfix*: an index that does not parse leaves the `[` to what follows
            // (in a block, the value after a `let` may be an array).
            loop {
                self.ws();
                if self.peek() != Some(b'[') {
                    break;
                }
                let snap = self.snap();
                self.pos += 1;
                let r = self.node().and_then(|_| self.expr());
                let r = r.and_then(|d| self.expect("]").map(|_| d));
                match r {
                    Ok(d) => els.push(El::Postfix(d)),
                    Err(Stop::Invalid) => {
                        self.restore(snap);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if comparison {
                // `<`, `>`, `=` at the very end can only grow into comparisons
                // (`!` may start a block's value after a `let`)
                self.ws();
                if matches!(self.rest(), b"<" | b">" | b"=") {
                    return Err(Stop::Invalid);
                }
            }
            let Some(bp) = self.infix()? else { break };
            self.node()?;
            match bp {
                BP_OR | BP_AND => comparison = false,
                BP_CMP if comparison => return Err(Stop::Invalid), // chained comparison
                BP_CMP => comparison = true,
                _ => {}
            }
            els.push(El::Infix(bp));
        }
        pratt_depth(&els, &mut 0, 0, 0).ok_or(Stop::Invalid)
    }

    /// An infix operator, in the grammar's order; its binding power.
    pub(super) fn infix(&mut self) -> R<Option<u8>> {
        const OPS: [(&str, u8); 13] = [
            ("||", BP_OR),
            ("&&", BP_AND),
            ("==", BP_CMP),
            ("!=", BP_CMP),
            ("<=", BP_CMP),
            (">=", BP_CMP),
            ("<", BP_CMP),
            (">", BP_CMP),
            ("+", BP_ADD),
            ("-", BP_ADD),
            ("**", BP_POW),
            ("*", BP_MUL),
            ("/", BP_MUL),
        ];
        if self.lit("||")? || self.lit_kw("or")? {
            return Ok(Some(BP_OR));
        }
        if self.lit("&&")? || self.lit_kw("and")? {
            return Ok(Some(BP_AND));
        }
        for (op, bp) in &OPS[2..] {
            if self.lit(op)? {
                return Ok(Some(*bp));
            }
        }
        Ok(None)
    }

    /// `primary`; returns its depth.
    pub(super) fn primary(&mut self) -> R<usize> {
        self.ws();
        let Some(b) = self.peek() else {
            return Err(Stop::Incomplete);
        };
        // if_expr: "if" has no word boundary in the grammar, so `iffy {..} else {..}`
        // is an `if`; when that fails, the word is an identifier.
        // In strict mode a word that only starts with `if` is a name.
        let glued = self.strict && self.s.get(self.pos + 2).is_some_and(|&c| is_ident_char(c));
        if self.rest().starts_with(b"if") && !glued {
            let partial = self.word()?.is_some_and(|(_, _, partial)| partial);
            if partial {
                return Err(Stop::Incomplete);
            }
            let exact = !self.s.get(self.pos + 2).is_some_and(|&c| is_ident_char(c));
            let snap = self.snap();
            self.pos += 2;
            match self.if_expr() {
                Ok(d) => return Ok(d),
                Err(Stop::Invalid) if !exact => self.restore(snap),
                Err(e) => return Err(e),
            }
        }
        match b {
            b'|' => return self.lambda(),
            b'[' => return self.array(),
            b'0'..=b'9' | b'.' => return self.number(),
            b'"' => return self.string(),
            b'(' => {
                self.pos += 1;
                self.node()?;
                let d = self.expr()?;
                self.expect(")")?;
                return Ok(1 + d);
            }
            b'{' => return self.block_expr().map(|d| 1 + d),
            _ => {}
        }
        let Some((w, end, partial)) = self.word()? else {
            return Err(Stop::Invalid);
        };
        if partial {
            // Unfinished: a call, a boolean or a name. Any word can still grow into
            // the name of an item defined later, so a call always fits (not in
            // strict mode, where calls go to earlier items only).
            if self.strict && !self.word_may_grow(w) {
                return Err(Stop::Invalid);
            }
            return Err(Stop::Incomplete);
        }
        if w == "true" || w == "false" {
            self.pos = end;
            self.node()?;
            return Ok(1);
        }
        if KEYWORDS.contains(&w) {
            return Err(Stop::Invalid);
        }
        self.pos = end;
        self.node()?; // ident
        // call = ident "(" args ")"
        if let Some(callee) = self.callee(w) {
            self.ws();
            if self.peek().is_none() {
                return Err(Stop::Incomplete);
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
                if self.scoped {
                    match callee {
                        Callee::Item(_) => self.calls.push(w),
                        Callee::Forward(_) => {
                            self.calls.push(w);
                            self.pending.push((w, None));
                        }
                        _ => {}
                    }
                }
                return self.call(callee);
            }
        }
        if !self.value_ok(w, false) {
            return Err(Stop::Invalid);
        }
        Ok(1)
    }

    /// The rest of a call after its `(`.
    pub(super) fn call(&mut self, callee: Callee<'a>) -> R<usize> {
        self.node()?; // call (its ident was counted)
        self.node()?; // args
        let mut depth = 0;
        if self.lit(")")? {
            return Ok(1);
        }
        loop {
            depth = depth.max(self.arg(callee)?);
            if self.lit(",")? {
                if self.lit(")")? {
                    break;
                }
                continue;
            }
            self.expect(")")?;
            break;
        }
        Ok(1 + depth)
    }

    /// arg = kwarg | expr.
    pub(super) fn arg(&mut self, callee: Callee<'a>) -> R<usize> {
        if let Some((w, end, partial)) = self.word()? {
            if partial {
                if self.kwarg_ok(callee, w, true) {
                    return Err(Stop::Incomplete);
                }
            } else if !KEYWORDS.contains(&w) {
                let snap = self.snap();
                self.pos = end;
                self.ws();
                let eq = self.peek() == Some(b'=') && self.s.get(self.pos + 1) != Some(&b'=');
                if eq && self.kwarg_ok(callee, w, false) {
                    self.pos += 1;
                    if let Callee::Forward(f) = callee {
                        self.pending.push((f, Some(w)));
                    }
                    self.node()?; // kwarg
                    self.node()?; // ident
                    return self.expr();
                }
                self.restore(snap);
            }
        }
        self.expr()
    }

    pub(super) fn array(&mut self) -> R<usize> {
        self.pos += 1;
        self.node()?;
        let mut depth = 0;
        if self.lit("]")? {
            return Ok(1);
        }
        loop {
            depth = depth.max(self.expr()?);
            if self.lit(",")? {
                if self.lit("]")? {
                    break;
                }
                continue;
            }
            self.expect("]")?;
            break;
        }
        Ok(1 + depth)
    }

    pub(super) fn lambda(&mut self) -> R<usize> {
        self.pos += 1;
        self.node()?;
        let mark = self.scope.len();
        loop {
            let name = self.def_ident()?;
            self.scope.push(name);
            if self.lit(",")? {
                continue;
            }
            self.expect("|")?;
            break;
        }
        let d = self.expr()?;
        self.scope.truncate(mark);
        Ok(1 + d)
    }

    /// The rest of an `if` after its keyword.
    pub(super) fn if_expr(&mut self) -> R<usize> {
        self.node()?;
        let cond = self.expr()?;
        let then = self.block_expr()?;
        self.expect("else")?;
        let els = if self.lit("if")? {
            self.if_expr()?
        } else {
            self.block_expr()?
        };
        Ok(1 + cond.max(then).max(els))
    }

    /// `block_expr`; returns the depth of its lets and value (the block node not counted).
    pub(super) fn block_expr(&mut self) -> R<usize> {
        self.expect("{")?;
        self.node()?;
        let mark = self.scope.len();
        let mut depth = 0;
        loop {
            self.ws();
            if !self.lit("let")? {
                break;
            }
            // `letx` may be `let x ...` or the name `letx`: try the `let` first.
            let exact = !self.s.get(self.pos).is_some_and(|&c| is_ident_char(c));
            let snap = self.snap();
            let r = self.node().and_then(|_| {
                let name = self.def_ident()?;
                if self.lit(":")? {
                    self.type_expr(0)?;
                }
                self.expect("=")?;
                let d = self.expr()?;
                Ok((name, d))
            });
            match r {
                Ok((name, d)) => {
                    self.scope.push(name);
                    depth = depth.max(d);
                    self.lit(";")?;
                }
                Err(Stop::Invalid) if !exact => {
                    self.restore(snap);
                    self.pos -= 3;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        depth = depth.max(self.expr()?);
        self.expect("}")?;
        self.scope.truncate(mark);
        Ok(depth)
    }

    pub(super) fn number(&mut self) -> R<usize> {
        let s = self.s;
        let n = s.len();
        let digit = |i: usize| s.get(i).is_some_and(|b| b.is_ascii_digit());
        let mut p = self.pos;
        if s[p] == b'.' {
            p += 1;
            if p == n {
                return Err(Stop::Incomplete);
            }
            if !digit(p) {
                return Err(Stop::Invalid);
            }
            while digit(p) {
                p += 1;
            }
        } else {
            while digit(p) {
                p += 1;
            }
            if s.get(p) == Some(&b'.') {
                p += 1;
                while digit(p) {
                    p += 1;
                }
            }
        }
        if matches!(s.get(p), Some(b'e' | b'E')) {
            let mut q = p + 1;
            if matches!(s.get(q), Some(b'+' | b'-')) {
                q += 1;
            }
            if q == n {
                return Err(Stop::Incomplete);
            }
            if digit(q) {
                while digit(q) {
                    q += 1;
                }
                p = q;
            }
        }
        self.pos = p;
        self.node()?;
        Ok(1)
    }

    pub(super) fn string(&mut self) -> R<usize> {
        let mut p = self.pos + 1;
        loop {
            match self.s.get(p) {
                None => return Err(Stop::Incomplete),
                Some(b'\n') => return Err(Stop::Invalid),
                Some(b'"') => break,
                Some(_) => p += 1,
            }
        }
        self.pos = p + 1;
        self.node()?;
        Ok(1)
    }
}
