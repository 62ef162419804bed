//! `sha256_hex(text)` and `md5_hex(text)`: lower-case hex digests of the UTF-8 bytes
//! (customer ids, ad-audience identifiers).

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use md5::Md5;
use sha2::{Digest, Sha256};

fn digest_hex<D: Digest>(args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("expects one text argument");
    };
    let scalar = matches!(arg, ColumnarValue::Scalar(_));
    let array =
        datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Utf8)?;
    let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
        return exec_err!("expects text");
    };
    let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 64);
    for v in strings.iter() {
        out.append_option(v.map(|s| hex::encode(D::digest(s.as_bytes()))));
    }
    let out = out.finish();
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
    }
    Ok(ColumnarValue::Array(Arc::new(out)))
}

macro_rules! digest_udf {
    ($ty:ident, $name:literal, $digest:ty) => {
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $ty {
            signature: Signature,
        }

        impl $ty {
            pub fn new() -> Self {
                Self {
                    signature: Signature::string(1, Volatility::Immutable),
                }
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ScalarUDFImpl for $ty {
            fn name(&self) -> &str {
                $name
            }
            fn signature(&self) -> &Signature {
                &self.signature
            }
            fn return_type(&self, _: &[DataType]) -> Result<DataType> {
                Ok(DataType::Utf8)
            }
            fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
                digest_hex::<$digest>(args)
            }
        }
    };
}

digest_udf!(Sha256Hex, "sha256_hex", Sha256);
digest_udf!(Md5Hex, "md5_hex", Md5);
